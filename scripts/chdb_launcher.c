/*
 * chdb_launcher: run the ClickHouse engine shipped in chDB's libchdb.so as a
 * local server, with a command line chosen by the caller.
 *
 * Usage:
 *   chdb_launcher [--lib PATH] [--] ARGV0 [ARG...]
 *
 * The library is taken from --lib PATH, else from $CHDB_LIB. Everything after
 * the options (ARGV0 ARG...) is handed unchanged, as argc/argv, to the
 * library's command-line entry point, exactly like clickhouse-local's main().
 * With "--query=SYSTEM START LISTEN TCP; SELECT sleepEachRow(...) FROM
 * system.numbers ..." the engine serves the native protocol until killed.
 *
 * Entry points, tried in this order (override with $CHDB_ENTRY):
 *   chdb_result *chdb_query_cmdline(int, char **)   (chDB >= 3.x, opaque
 *       result read through chdb_result_error/_buffer/_length and freed with
 *       chdb_destroy_query_result)
 *   struct local_result_v2 *query_stable_v2(int, char **)  (older chDB)
 *
 * Build: gcc -O2 -o chdb_launcher chdb_launcher.c -ldl
 * Exit status: 0 if the query ended without error, 1 if it reported an error,
 * 2 for usage errors, 3 if the library or its entry point cannot be loaded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Layout of the older, non-opaque result (chdb.h, query_stable_v2). */
struct local_result_v2 {
    char *buf;
    size_t len;
    void *_vec;
    double elapsed;
    uint64_t rows_read;
    uint64_t bytes_read;
    char *error_message;
};

typedef void *(*cmdline_fn)(int, char **);
typedef const char *(*result_error_fn)(void *);
typedef char *(*result_buffer_fn)(void *);
typedef size_t (*result_length_fn)(void *);
typedef void (*destroy_fn)(void *);

static void usage(const char *self)
{
    fprintf(stderr,
            "usage: %s [--lib PATH] [--] ARGV0 [ARG...]\n"
            "  PATH defaults to $CHDB_LIB; ARGV0 ARG... are passed to the\n"
            "  engine's command line (e.g. clickhouse --path=DIR --query=...)\n",
            self);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_output(const char *buf, size_t len)
{
    if (buf != NULL && len > 0) {
        fwrite(buf, 1, len, stdout);
        if (buf[len - 1] != '\n')
            fputc('\n', stdout);
        fflush(stdout);
    }
}

/* Supervision: the engine has been seen to die without a word under the test
 * suites' abuse (clients SIGKILLed mid-insert, databases dropped). With
 * --supervise the launcher forks the engine as a child, logs how it ended
 * (exit status or signal) and starts it again, so a test run survives it and
 * the log says what happened. SIGTERM and SIGINT are passed on to the child
 * and end the supervisor too. */
static volatile sig_atomic_t stop_requested;
static volatile pid_t child_pid;

static void forward_signal(int sig)
{
    stop_requested = 1;
    if (child_pid > 0)
        kill(child_pid, sig);
}

static int supervise(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int restarts = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("chdb_launcher: fork");
            return 3;
        }
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            return -1; /* the child goes on to run the engine */
        }
        child_pid = pid;
        if (stop_requested) /* a signal that came before child_pid was set */
            kill(pid, SIGTERM);
        int st;
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR) {
                perror("chdb_launcher: waitpid");
                return 3;
            }
        }
        child_pid = 0;
        if (WIFSIGNALED(st))
            fprintf(stderr, "chdb_launcher: engine pid %d killed by signal %d (%s)%s\n", (int)pid,
                    WTERMSIG(st), strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" : "");
        else
            fprintf(stderr, "chdb_launcher: engine pid %d exited with status %d\n", (int)pid, WEXITSTATUS(st));
        fflush(stderr);
        if (stop_requested)
            return 0;
        if (++restarts > 20) {
            fprintf(stderr, "chdb_launcher: engine died %d times; giving up\n", restarts);
            return 3;
        }
        fprintf(stderr, "chdb_launcher: restarting the engine (restart %d)\n", restarts);
        sleep(1);
    }
}

int main(int argc, char **argv)
{
    const char *lib = getenv("CHDB_LIB");
    int i = 1;
    int want_supervise = 0;

    while (i < argc) {
        if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) {
            lib = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--lib=", 6) == 0) {
            lib = argv[i] + 6;
            i++;
        } else if (strcmp(argv[i], "--supervise") == 0) {
            want_supervise = 1;
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(argv[0]);
            return 0;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            break;
        }
    }
    if (lib == NULL || *lib == '\0') {
        fprintf(stderr, "chdb_launcher: no library given (--lib PATH or $CHDB_LIB)\n");
        usage(argv[0]);
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "chdb_launcher: no engine command line given\n");
        usage(argv[0]);
        return 2;
    }

    if (want_supervise) {
        int rc = supervise();
        if (rc >= 0)
            return rc;
    }

    double t0 = now_s();
    fprintf(stderr, "chdb_launcher: loading %s\n", lib);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "chdb_launcher: dlopen(%s) failed: %s\n", lib, dlerror());
        return 3;
    }
    fprintf(stderr, "chdb_launcher: loaded in %.2fs\n", now_s() - t0);

    const char *want = getenv("CHDB_ENTRY");
    const char *entry = NULL;
    cmdline_fn fn = NULL;
    const char *candidates[] = {"chdb_query_cmdline", "query_stable_v2"};
    for (size_t k = 0; k < sizeof candidates / sizeof candidates[0]; k++) {
        if (want != NULL && *want != '\0' && strcmp(want, candidates[k]) != 0)
            continue;
        dlerror();
        void *sym = dlsym(h, candidates[k]);
        if (sym != NULL) {
            /* POSIX allows converting dlsym's void* to a function pointer. */
            memcpy(&fn, &sym, sizeof fn);
            entry = candidates[k];
            break;
        }
    }
    if (fn == NULL) {
        fprintf(stderr,
                "chdb_launcher: %s exports no usable entry point (%s): %s\n",
                lib, (want && *want) ? want : "chdb_query_cmdline, query_stable_v2",
                dlerror());
        return 3;
    }

    int n = argc - i;
    /* argv for the engine: a NULL-terminated copy, like main()'s. */
    char **eargv = calloc((size_t)n + 1, sizeof *eargv);
    if (eargv == NULL) {
        perror("chdb_launcher: calloc");
        return 3;
    }
    for (int k = 0; k < n; k++)
        eargv[k] = argv[i + k];

    fprintf(stderr, "chdb_launcher: calling %s with %d args\n", entry, n);
    fflush(stderr);
    void *res = fn(n, eargv);
    fprintf(stderr, "chdb_launcher: %s returned after %.1fs\n", entry, now_s() - t0);

    int rc = 0;
    if (res == NULL) {
        fprintf(stderr, "chdb_launcher: %s returned no result\n", entry);
        rc = 1;
    } else if (strcmp(entry, "chdb_query_cmdline") == 0) {
        result_error_fn err_f = (result_error_fn)dlsym(h, "chdb_result_error");
        result_buffer_fn buf_f = (result_buffer_fn)dlsym(h, "chdb_result_buffer");
        result_length_fn len_f = (result_length_fn)dlsym(h, "chdb_result_length");
        destroy_fn free_f = (destroy_fn)dlsym(h, "chdb_destroy_query_result");
        const char *err = err_f ? err_f(res) : NULL;
        if (err != NULL && *err != '\0') {
            fprintf(stderr, "chdb_launcher: query error: %s\n", err);
            rc = 1;
        }
        if (buf_f != NULL && len_f != NULL)
            print_output(buf_f(res), len_f(res));
        if (free_f != NULL)
            free_f(res);
    } else {
        struct local_result_v2 *r = res;
        if (r->error_message != NULL && *r->error_message != '\0') {
            fprintf(stderr, "chdb_launcher: query error: %s\n", r->error_message);
            rc = 1;
        }
        print_output(r->buf, r->len);
        destroy_fn free_f = (destroy_fn)dlsym(h, "free_result_v2");
        if (free_f != NULL)
            free_f(r);
    }
    free(eargv);
    fflush(stdout);
    fflush(stderr);
    /* Skip the engine's static destructors: they are slow and not needed. */
    _Exit(rc);
}
