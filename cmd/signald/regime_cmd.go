package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/regime"
)

// loadModel reads a model file; an empty path selects the built-in model.
func loadModel(path string) (*regime.Model, error) {
	if path == "" {
		return regime.DefaultModel(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--regime-model: %w", err)
	}
	m, err := regime.ParseModel(b)
	if err != nil {
		return nil, fmt.Errorf("--regime-model %s: %w", path, err)
	}
	return m, nil
}

const regimeUsage = `Usage:
  signald regime fit [flags]    fit the regime HMM from stored ticks (or a synthetic stream) and write a model file
  signald regime eval [flags]   score the detectors on a synthetic stream with known regime switches and anomalies

Run 'signald regime fit -h' or 'signald regime eval -h' for the flags.
`

func cmdRegime(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, regimeUsage)
		return usageError{}
	}
	switch args[0] {
	case "fit":
		return cmdRegimeFit(ctx, args[1:], stdout, stderr)
	case "eval":
		return cmdRegimeEval(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, regimeUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, regimeUsage)
	return usageErrorf("unknown subcommand %q: want fit or eval", args[0])
}

func cmdRegimeFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald regime fit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addStoreSourceFlags(fs, "training range")
	step := fs.Duration("step", time.Second, "feature step (use the run's)")
	states := fs.Int("states", regime.DefaultStates, "number of regime states, 2 to 4")
	restarts := fs.Int("restarts", regime.DefaultRestarts, "k-means initializations (the best likelihood wins)")
	seed := fs.Uint64("seed", 1, "seed of the initializations (and of --synthetic)")
	window := fs.Int("window", regime.DefaultWindow, "input window W: the fit reads mid_ret_mean_W and mid_ret_std_W")
	volHalfLife := fs.Int("vol-half-life", regime.DefaultVolHalfLife, "half-life in steps of the volatility baseline")
	out := fs.String("out", "", "model file to write (default: stdout)")
	synthetic := fs.Bool("synthetic", false, "fit on a synthetic stream instead of stored ticks (how the built-in model is made)")
	synInst := fs.Int("synthetic-instruments", 8, "instruments of the synthetic stream")
	synSteps := fs.Int("synthetic-steps", 20000, "steps per instrument of the synthetic stream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fc := regime.FitConfig{States: *states, Restarts: *restarts, Seed: *seed,
		Inputs: regime.Inputs{Window: *window, VolHalfLife: *volHalfLife}}
	var model *regime.Model
	var err error
	if *synthetic {
		fc.Source = fmt.Sprintf("synthetic: signald regime fit --synthetic --seed %d --synthetic-instruments %d --synthetic-steps %d --states %d --window %d",
			*seed, *synInst, *synSteps, *states, *window)
		model, err = regime.FitSynthetic(regime.SynthConfig{Seed: *seed, Instruments: *synInst, Steps: *synSteps}, fc)
	} else {
		model, err = fitStored(ctx, fc, src, *step, stderr)
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(model, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "regime fit: %s, states %v, %d observations in %d sequences, log-likelihood %.4f per observation\n",
		model.Version, model.States, model.Training.Observations, model.Training.Sequences, model.Training.LogLikelihood)
	return nil
}

// fitStored reads stored ticks through the feature engine, as a backtest
// does, and fits on the resulting records.
func fitStored(ctx context.Context, fc regime.FitConfig, src *storeSource, step time.Duration, stderr io.Writer) (*regime.Model, error) {
	q, err := src.query()
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := src.open(ctx, log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	sp, err := pipeline.NewStepper(pipeline.StepperConfig{Features: features.Config{Step: step}}, log, nil)
	if err != nil {
		return nil, err
	}
	// Check the engine's columns as the daemon does.
	probe := *regime.DefaultModel()
	probe.Inputs = fc.Inputs
	cfg, err := pipeline.RegimeColumns(sp.Engine().Schema(), &probe)
	if err != nil {
		return nil, fmt.Errorf("regime fit: %w", err)
	}
	sb := regime.NewSeqBuilder(fc.Inputs, cfg.Columns, 0)
	n, err := sp.FeedAll(ctx, func(fn func([]market.Tick) error) error { return st.ReadTicks(ctx, q, fn) }, true, sb.Add, nil)
	if err != nil {
		return nil, err
	}
	if fc.Source == "" {
		fc.Source = fmt.Sprintf("%s: %d ticks, range [%s, %s), instruments %q, step %v", src.describe(), n, *src.from, *src.to, *src.instruments, step)
	}
	seqs := sb.Sequences()
	if len(seqs) == 0 {
		return nil, fmt.Errorf("regime fit: no usable feature rows in %d ticks (need more than %d steps per instrument after the %d-step window)", n, regime.DefaultWarmUp, fc.Inputs.Window)
	}
	return regime.Fit(seqs, fc)
}

func cmdRegimeEval(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald regime eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 2, "seed of the synthetic stream (the built-in model was fitted on seed 1)")
	inst := fs.Int("instruments", 8, "instruments")
	steps := fs.Int("steps", 20000, "steps per instrument (1 s each)")
	modelPath := fs.String("regime-model", "", "model file (default: the built-in model)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *inst < 1 {
		return fmt.Errorf("--instruments %d: must be at least 1", *inst)
	}
	if *steps < 1 {
		return fmt.Errorf("--steps %d: must be at least 1 (steps per instrument)", *steps)
	}
	model, err := loadModel(*modelPath)
	if err != nil {
		return err
	}
	rep, err := regime.Evaluate(regime.EvalConfig{
		Synth:     regime.SynthConfig{Seed: *seed, Instruments: *inst, Steps: *steps, Window: model.Inputs.Window},
		Detectors: regime.Config{Model: model},
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "model %s; synthetic stream seed %d, %d instruments x %d steps\n", model.Version, *seed, *inst, *steps)
	rep.WriteText(stdout)
	return nil
}
