package pipeline

import (
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/signald-dev/signald/regime"
)

func TestRegimeColumns(t *testing.T) {
	m := regime.DefaultModel()
	mk := func(cols ...string) *arrowSchema { return testSchema(cols...) }
	if _, err := RegimeColumns(mk("mid", "mid_ret", "mid_ret_mean_60", "mid_ret_std_60", "spread_bps"), m); err != nil {
		t.Errorf("catalogue names: %v", err)
	}
	_, err := RegimeColumns(mk("mid", "mid_ret", "spread_bps"), m)
	if err == nil || !strings.Contains(err.Error(), "missing columns mid_ret_mean_60, mid_ret_std_60") {
		t.Errorf("missing columns: %v", err)
	}
}

type arrowSchema = arrow.Schema

func testSchema(cols ...string) *arrow.Schema {
	fields := []arrow.Field{
		{Name: "time", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: "venue", Type: arrow.BinaryTypes.String},
		{Name: "instrument", Type: arrow.BinaryTypes.String},
	}
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64})
	}
	return arrow.NewSchema(fields, nil)
}
