/* test_http_metrics.c — the Prometheus exposition of coordinator/metrics.c:
 * names, labels, cumulative histogram buckets, gauges from coord_stats; then
 * `promtool check metrics` over the text when promtool is installed (Debian's
 * prometheus package, scripts/setup.sh). Without promtool the format checks
 * still run and the test reports SKIP (77), saying so. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/metrics.h"

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return true;
    return false;
}

int main(void)
{
    metrics_t *m;
    T_CHECK(metrics_create(&m) == MS_OK);
    metrics_request_done(m, REQ_FINISH_LENGTH, 6, 16, 0.015, 0.004, 0.08);
    metrics_request_done(m, REQ_FINISH_STOP, 4, 1, 0.5, -1, 0.5);
    metrics_request_done(m, REQ_FINISH_ABORT, 3, 0, -1, -1, 2000.0);
    metrics_http_response(m, 200);
    metrics_http_response(m, 200);
    metrics_http_response(m, 400);
    coord_stats_t st = {.running = 3, .waiting = 7, .kv_blocks_used = 11, .kv_blocks_free = 89, .last_batch_size = 3,
                        .steps = 1234, .ready = true};
    char *text = NULL;
    size_t len = 0;
    T_CHECK(metrics_render(m, &st, &text, &len) == MS_OK && text && strlen(text) == len);
    if (!text) return t_done();

    T_CHECK(has_line(text, "# TYPE moeserve_requests_total counter"));
    T_CHECK(has_line(text, "moeserve_requests_total{finish_reason=\"length\"} 1"));
    T_CHECK(has_line(text, "moeserve_requests_total{finish_reason=\"stop\"} 1"));
    T_CHECK(has_line(text, "moeserve_requests_total{finish_reason=\"abort\"} 1"));
    T_CHECK(has_line(text, "moeserve_requests_total{finish_reason=\"error\"} 0"));
    T_CHECK(has_line(text, "moeserve_http_responses_total{code=\"200\"} 2"));
    T_CHECK(has_line(text, "moeserve_http_responses_total{code=\"400\"} 1"));
    T_CHECK(has_line(text, "moeserve_prompt_tokens_total 13"));
    T_CHECK(has_line(text, "moeserve_generation_tokens_total 17"));
    T_CHECK(has_line(text, "# TYPE moeserve_time_to_first_token_seconds histogram"));
    /* 0.015 ≤ 0.02, 0.5 ≤ 0.5: cumulative counts; the abort had no first token */
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_bucket{le=\"0.01\"} 0"));
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_bucket{le=\"0.02\"} 1"));
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_bucket{le=\"0.5\"} 2"));
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_count 2"));
    T_CHECK(has_line(text, "moeserve_time_to_first_token_seconds_sum 0.51500000000000001"));
    T_CHECK(has_line(text, "moeserve_time_per_output_token_seconds_count 1"));
    /* 2000 s is above every E2E bound: only +Inf holds it */
    T_CHECK(has_line(text, "moeserve_e2e_request_latency_seconds_bucket{le=\"1800\"} 2"));
    T_CHECK(has_line(text, "moeserve_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 3"));
    T_CHECK(has_line(text, "moeserve_num_requests_running 3"));
    T_CHECK(has_line(text, "moeserve_num_requests_waiting 7"));
    T_CHECK(has_line(text, "moeserve_kv_cache_blocks_used 11"));
    T_CHECK(has_line(text, "moeserve_kv_cache_blocks_free 89"));
    T_CHECK(has_line(text, "moeserve_batch_size 3"));
    T_CHECK(has_line(text, "moeserve_ready 1"));
    T_CHECK(has_line(text, "moeserve_engine_steps_total 1234"));
    T_CHECK(text[len - 1] == '\n');

    /* promtool */
    int rc = 0;
    const char *promtool = access("/usr/bin/promtool", X_OK) == 0 ? "/usr/bin/promtool" : NULL;
    if (!promtool && system("command -v promtool >/dev/null 2>&1") == 0) promtool = "promtool";
    if (promtool) {
        char path[] = "/tmp/moeserve_metrics_XXXXXX";
        int fd = mkstemp(path);
        T_CHECK(fd >= 0);
        if (fd >= 0) {
            T_CHECK(write(fd, text, len) == (ssize_t)len);
            close(fd);
            char cmd[256];
            snprintf(cmd, sizeof cmd, "%s check metrics < %s", promtool, path);
            int st2 = system(cmd);
            T_CHECK_MSG(st2 == 0, "promtool check metrics failed (status %d) on %s", st2, path);
            if (st2 == 0) unlink(path);
        }
    }
    free(text);
    metrics_destroy(m);
    rc = t_done();
    if (rc == 0 && !promtool) {
        fprintf(stderr, "SKIP: promtool not found (Debian package 'prometheus', installed by scripts/setup.sh); "
                        "format checks passed but the exposition was not validated by promtool\n");
        return 77;
    }
    return rc;
}
