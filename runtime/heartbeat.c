/* heartbeat.c — rank 0 notices by itself that a peer rank died (heartbeat.h).
 *
 * Why not MPI: rank 0's main thread is the only one that calls MPI
 * (MPI_THREAD_FUNNELED), and when a peer dies it is usually blocked in a
 * receive or a collective that Open MPI never fails (shared memory has no
 * error to report); mpirun then kills the job about 2 s later, and the
 * clients of rank 0 would see their streams just close.
 *
 * How: at startup rank 0 listens on a TCP port (loopback when every rank is
 * on its node) and broadcasts {port, host, cookie}; every worker connects,
 * sends {cookie, rank}, and a thread of its own writes one byte every
 * HB_PERIOD_S. A thread on rank 0 polls the connections: EOF or an error
 * (the kernel closes the socket of a process that died, kill -9 included) or
 * HB_TIMEOUT_S of silence (a hung or unreachable node) is a dead rank, handed
 * to shutdown_peer_died while armed: from the start of serving (hb_arm) until
 * an orderly shutdown (hb_disarm), as workers that exit close their sockets
 * too. A rank found dead while disarmed is only forgotten. */
#include "heartbeat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shutdown.h"

#define HB_PERIOD_S 1
#define HB_TIMEOUT_S 5
#define HB_CONNECT_S 30
#define MS_STR_(x) #x
#define MS_STR(x) MS_STR_(x)

typedef struct {
    int32_t port;
    int32_t all_local;
    uint64_t cookie;
    char host[MPI_MAX_PROCESSOR_NAME];
} hb_addr_t;

struct hb {
    int rank, size;
    int *fds;          /* rank 0: per rank (fds[0] unused); worker: fds[0] to rank 0 */
    double *last;      /* rank 0: last byte from each rank (monotonic s) */
    volatile int armed;
    volatile int quit;
    pthread_t thread;
    bool have_thread;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *rank0_thread(void *arg)
{
    hb_t *h = arg;
    int n = h->size - 1;
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    if (!pf) return NULL;
    while (!h->quit) {
        for (int r = 1; r < h->size; r++) pf[r - 1] = (struct pollfd){.fd = h->fds[r], .events = POLLIN};
        int k = poll(pf, (nfds_t)n, 200);
        if (k < 0 && errno != EINTR) break;
        double now = now_s();
        for (int r = 1; r < h->size && !h->quit; r++) {
            const char *why = NULL;
            if (pf[r - 1].revents & (POLLIN | POLLHUP | POLLERR)) {
                char buf[64];
                ssize_t got = recv(h->fds[r], buf, sizeof buf, MSG_DONTWAIT);
                if (got > 0) h->last[r] = now;
                else if (got == 0) why = "its connection closed: the process exited or was killed";
                else if (errno != EAGAIN && errno != EINTR) why = strerror(errno);
            }
            if (!why && now - h->last[r] > HB_TIMEOUT_S) why = "no heartbeat for " MS_STR(HB_TIMEOUT_S) " s";
            if (why && h->armed) shutdown_peer_died(r, why);
            if (why) h->fds[r] = -1; /* disarmed: ignore it from now on (poll skips fd -1) */
        }
    }
    free(pf);
    return NULL;
}

static void *worker_thread(void *arg)
{
    hb_t *h = arg;
    while (!h->quit) {
        if (send(h->fds[0], "h", 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN && errno != EINTR) break; /* rank 0 gone */
        for (int i = 0; i < HB_PERIOD_S * 10 && !h->quit; i++) usleep(100000);
    }
    return NULL;
}

static int listen_socket(bool loopback, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0,
                             .sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY)};
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static int connect_to(const hb_addr_t *a)
{
    char port[16];
    snprintf(port, sizeof port, "%d", a->port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    const char *host = a->all_local ? "127.0.0.1" : a->host;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* Rank 0: accept size-1 workers, each proving the cookie and naming its rank. */
static bool accept_workers(hb_t *h, int lfd, uint64_t cookie)
{
    int missing = h->size - 1;
    double deadline = now_s() + HB_CONNECT_S;
    while (missing > 0 && now_s() < deadline) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        struct {
            uint64_t cookie;
            int32_t rank, pad;
        } hello;
        struct timeval tv = {2, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (recv(fd, &hello, sizeof hello, MSG_WAITALL) != (ssize_t)sizeof hello || hello.cookie != cookie ||
            hello.rank < 1 || hello.rank >= h->size || h->fds[hello.rank] >= 0) {
            close(fd); /* not one of ours */
            continue;
        }
        h->fds[hello.rank] = fd;
        h->last[hello.rank] = now_s();
        missing--;
    }
    return missing == 0;
}

ms_status_t hb_start(MPI_Comm world, hb_t **out)
{
    *out = NULL;
    hb_t *h = calloc(1, sizeof *h);
    if (!h) return MS_ERR(MS_ERR_NOMEM, "heartbeat: out of memory");
    MPI_Comm_rank(world, &h->rank);
    MPI_Comm_size(world, &h->size);
    if (h->size == 1) {
        *out = h;
        return MS_OK;
    }
    h->fds = malloc(sizeof *h->fds * (size_t)h->size);
    h->last = calloc((size_t)h->size, sizeof *h->last);
    if (!h->fds || !h->last) {
        hb_destroy(h);
        return MS_ERR(MS_ERR_NOMEM, "heartbeat: out of memory");
    }
    for (int r = 0; r < h->size; r++) h->fds[r] = -1;

    /* Where rank 0 listens: loopback when every rank shares its node. */
    char name[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0, local = 1, all_local = 1;
    MPI_Get_processor_name(name, &len);
    hb_addr_t a = {0};
    if (h->rank == 0) snprintf(a.host, sizeof a.host, "%s", name);
    MPI_Bcast(a.host, sizeof a.host, MPI_CHAR, 0, world);
    local = strcmp(a.host, name) == 0;
    MPI_Allreduce(&local, &all_local, 1, MPI_INT, MPI_MIN, world);
    int lfd = -1;
    if (h->rank == 0) {
        int port = 0;
        lfd = listen_socket(all_local, &port);
        uint64_t cookie = 0;
        FILE *ur = fopen("/dev/urandom", "rb");
        if (!ur || fread(&cookie, sizeof cookie, 1, ur) != 1) cookie = (uint64_t)now_s() * 2654435761u ^ (uint64_t)getpid();
        if (ur) fclose(ur);
        a.port = lfd >= 0 ? port : -1;
        a.all_local = all_local;
        a.cookie = cookie;
    }
    MPI_Bcast(&a, sizeof a, MPI_BYTE, 0, world);
    bool ok = a.port > 0;
    if (ok && h->rank != 0) {
        int fd = connect_to(&a);
        struct {
            uint64_t cookie;
            int32_t rank, pad;
        } hello = {a.cookie, h->rank, 0};
        ok = fd >= 0 && send(fd, &hello, sizeof hello, MSG_NOSIGNAL) == (ssize_t)sizeof hello;
        if (!ok && fd >= 0) close(fd);
        if (ok) h->fds[0] = fd;
        if (!ok) (void)MS_ERR(MS_ERR_IO, "rank %d: cannot reach rank 0's heartbeat port %s:%d: %s", h->rank,
                             a.all_local ? "127.0.0.1" : a.host, a.port, strerror(errno));
    } else if (ok) {
        ok = accept_workers(h, lfd, a.cookie);
        if (!ok) (void)MS_ERR(MS_ERR_IO, "rank 0: not every rank connected to the heartbeat port within %d s",
                             HB_CONNECT_S);
    }
    if (lfd >= 0) close(lfd);
    if (ok) {
        ok = pthread_create(&h->thread, NULL, h->rank == 0 ? rank0_thread : worker_thread, h) == 0;
        h->have_thread = ok;
    }
    if (!ok) {
        hb_destroy(h);
        return MS_ERR(MS_ERR_IO, "heartbeat: setup failed on rank %d", h->rank);
    }
    *out = h;
    return MS_OK;
}

void hb_arm(hb_t *h)
{
    if (h) h->armed = 1;
}

void hb_disarm(hb_t *h)
{
    if (h) h->armed = 0;
}

void hb_destroy(hb_t *h)
{
    if (!h) return;
    h->armed = 0;
    h->quit = 1;
    if (h->have_thread) pthread_join(h->thread, NULL);
    if (h->fds)
        for (int r = 0; r < h->size; r++)
            if (h->fds[r] >= 0) close(h->fds[r]);
    free(h->fds);
    free(h->last);
    free(h);
}
