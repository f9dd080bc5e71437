/* shutdown.c — how `moeserve serve` ends (shutdown.h): signals, the
 * graceful drain on rank 0, and the reaction to a dead rank.
 *
 * SIGINT/SIGTERM are blocked in every thread and taken here by one sigwait
 * thread.
 *   Rank 0, first signal: the gateway drains (/health and new requests 503,
 *     listener open); this thread then watches, every 50 ms, until no request
 *     is in flight or drain_timeout has passed, and only then stops the engine
 *     loop (coord_stop), which aborts whatever is left. A second signal two or
 *     more seconds after the first ends the drain at once (Ctrl-C reaches rank
 *     0 twice at once: from the terminal and forwarded by mpirun, so a second
 *     signal within 2 s is the same keystroke); a third exits at once.
 *   A signal from mpirun shortens the drain to what Open MPI allows before
 *     it SIGKILLs the ranks (grace_for), so clients still get an answer.
 *   Before the gateway exists (loading) a signal stops at once.
 *   Workers ignore signals for drain_timeout + 10 s (mpirun forwards its
 *     SIGTERM to every rank: rank 0 leads the shutdown) and exit 1 after it,
 *     so a worker signalled alone still brings the job down.
 * A dead rank (heartbeat.c) ends every in-flight request with a 503 naming
 * it, waits briefly for the replies to be written and exits 1: the engine
 * loop may be blocked inside MPI for good, so nothing orderly is possible. */
#include "shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    int rank;
    double grace_s;
    sigset_t set;
    coord_t *coord;      /* rank 0, once created */
    http_server_t *http; /* rank 0, once serving */
    bool stopping;
    volatile int exiting; /* main thread is past its loop */
    double t_first;       /* monotonic seconds of the first signal */
    pthread_mutex_t mu;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds we may drain for. A signal from mpirun (our parent, when mpirun
 * launched us) means Open MPI is tearing the job down: it SIGKILLs every
 * rank odls_base_sigkill_timeout seconds (default 1) after its SIGTERM, so
 * the drain must end in time to answer the clients still waiting. */
static double grace_for(const siginfo_t *si)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") || si->si_pid != getppid()) return g.grace_s;
    const char *v = getenv("OMPI_MCA_odls_base_sigkill_timeout");
    double kill_s = v && *v ? atof(v) : 1.0;
    double grace = kill_s - 0.5 < g.grace_s ? kill_s - 0.5 : g.grace_s;
    if (grace < 0) grace = 0;
    if (grace < g.grace_s)
        MS_WARN("the signal came from mpirun, which kills every rank %g s later (odls_base_sigkill_timeout): "
                "draining for %g s instead of drain_timeout %g s (signal rank 0 itself, or run mpirun with "
                "--mca odls_base_sigkill_timeout N, for a full drain)", kill_s, grace, g.grace_s);
    return grace;
}

/* Rank 0 after the first signal, with the gateway up: drain, then stop. */
static void drain(coord_t *c, http_server_t *http, int sig, double grace_s)
{
    double t0 = now_s(), deadline = t0 + grace_s;
    int n0 = http_server_in_flight(http);
    MS_INFO("%s: shutting down: draining %d requests in flight for up to %g s (no new requests; a second signal "
            "aborts them)", strsignal(sig), n0, grace_s);
    http_server_drain(http);
    struct timespec tick = {0, 50 * 1000 * 1000};
    for (;;) {
        int n = http_server_in_flight(http);
        if (n == 0) {
            MS_INFO("drained: %d requests finished in %.2f s", n0, now_s() - t0);
            break;
        }
        if (now_s() >= deadline) {
            MS_WARN("drain time of %g s passed: aborting %d requests still in flight", grace_s, n);
            break;
        }
        int s2 = sigtimedwait(&g.set, NULL, &tick);
        if (s2 > 0 && now_s() - g.t_first >= 2) {
            MS_WARN("second %s: aborting %d requests in flight now", strsignal(s2), http_server_in_flight(http));
            break;
        }
    }
    coord_stop(c);
}

static void *signal_thread(void *arg)
{
    (void)arg;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&g.set, &si);
        if (sig < 0) continue;
        pthread_mutex_lock(&g.mu);
        bool first = !g.stopping;
        g.stopping = true;
        coord_t *c = g.coord;
        http_server_t *http = g.http;
        pthread_mutex_unlock(&g.mu);
        double now = now_s();
        if (first) g.t_first = now;
        if (g.rank == 0) {
            if (!first && now - g.t_first >= 2) {
                MS_WARN("another %s: exiting now", strsignal(sig));
                _exit(1);
            }
            if (!first) continue;
            if (c && http) {
                drain(c, http, sig, grace_for(&si));
            } else {
                MS_INFO("%s: shutting down (still starting: nothing to drain)", strsignal(sig));
                if (c) coord_stop(c);
            }
        } else if (first) {
            int wait_s = (int)g.grace_s + 10;
            MS_INFO("%s: waiting for rank 0 to shut the job down", strsignal(sig));
            for (int i = 0; i < wait_s * 10 && !g.exiting; i++) usleep(100000);
            if (!g.exiting) {
                MS_WARN("rank 0 did not shut the job down within %d s of %s; exiting", wait_s, strsignal(sig));
                _exit(1);
            }
        }
    }
    return NULL;
}

void shutdown_signals_block(void)
{
    sigemptyset(&g.set);
    sigaddset(&g.set, SIGINT);
    sigaddset(&g.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &g.set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void shutdown_signals_start(int rank, double drain_timeout_s)
{
    g.rank = rank;
    g.grace_s = drain_timeout_s;
    pthread_t th;
    if (pthread_create(&th, NULL, signal_thread, NULL) == 0) pthread_detach(th);
    else MS_WARN("cannot start the signal thread: SIGTERM/SIGINT will be ignored");
}

void shutdown_set_coord(coord_t *c)
{
    pthread_mutex_lock(&g.mu);
    g.coord = c;
    if (c && g.stopping) coord_stop(c);
    pthread_mutex_unlock(&g.mu);
}

void shutdown_set_http(http_server_t *http)
{
    pthread_mutex_lock(&g.mu);
    g.http = http;
    pthread_mutex_unlock(&g.mu);
}

void shutdown_mark_exiting(void)
{
    g.exiting = 1;
}

void shutdown_peer_died(int rank, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "rank %d of the job died (%s); the server is going down", rank, why);
    (void)MS_ERR(MS_ERR_IO, "%s", msg);
    pthread_mutex_lock(&g.mu);
    http_server_t *http = g.http;
    pthread_mutex_unlock(&g.mu);
    if (http) {
        http_server_fail_all(http, msg);
        /* the gateway thread writes the answers; give it a moment */
        double t0 = now_s();
        while (now_s() - t0 < 1.0 && (http_server_in_flight(http) > 0 || http_server_writing(http) > 0))
            usleep(10000);
        usleep(50000); /* the last bytes leave the socket buffers */
    }
    (void)MS_ERR(MS_ERR_IO, "exiting after the death of rank %d", rank);
    fflush(NULL);
    _exit(1);
}
