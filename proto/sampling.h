/* sampling.h — the one rule for a sequence's sampling knobs, checked on the
 * values the engine will actually use (the floats of proto_seq_t).
 *
 * The gateway checks a request with it (openai_parse.c answers 400 naming
 * the field) and the engine checks every plan sequence with it
 * (worker/engine.c plan check), so a value the gateway accepts can never
 * make the engine reject a step. The check runs on floats on purpose: a
 * JSON `top_p` of 1e-46 is a positive double but 0 as a float. */
#ifndef MS_PROTO_SAMPLING_H
#define MS_PROTO_SAMPLING_H

#include <float.h>
#include <stddef.h>

/* Above this the softmax of any logits is uniform within float rounding:
 * a larger temperature means nothing more and risks inf/NaN in the sampler. */
#define PROTO_TEMPERATURE_MAX 1e4f

/* A double converted to the float the engine will see, without the
 * undefined behaviour of converting an out-of-range value. */
static inline float proto_sampling_float(double v)
{
    if (v > FLT_MAX) return FLT_MAX * 2.0f; /* +inf */
    if (v < -FLT_MAX) return -FLT_MAX * 2.0f;
    return (float)v;
}

/* NULL when the knobs are valid; else the name of the first bad field, with
 * `*rule` (when given) saying what it must be. n_logprobs: -1 (none) up to
 * max_logprobs. */
static inline const char *proto_sampling_check(float temperature, float top_p, int top_k, int n_logprobs,
                                               int max_logprobs, const char **rule)
{
    const char *bad = NULL, *why = NULL;
    if (!(temperature >= 0.0f && temperature <= PROTO_TEMPERATURE_MAX))
        bad = "temperature", why = "must be a number in [0, 10000]";
    else if (!(top_p > 0.0f && top_p <= 1.0f))
        bad = "top_p", why = "must be in (0, 1] (and not so small that it is 0 as a 32-bit float)";
    else if (top_k < 0)
        bad = "top_k", why = "must be >= 0 (or -1 for off)";
    else if (n_logprobs < -1 || n_logprobs > max_logprobs)
        bad = "logprobs", why = "is out of range";
    if (rule) *rule = why;
    return bad;
}

/* The same for vLLM's sampling controls (vLLM's ranges): NULL when valid. */
static inline const char *proto_penalty_check(float presence, float frequency, float repetition, float min_p,
                                              const char **rule)
{
    const char *bad = NULL, *why = NULL;
    if (!(presence >= -2.0f && presence <= 2.0f)) bad = "presence_penalty", why = "must be in [-2, 2]";
    else if (!(frequency >= -2.0f && frequency <= 2.0f)) bad = "frequency_penalty", why = "must be in [-2, 2]";
    else if (!(repetition > 0.0f && repetition <= FLT_MAX)) bad = "repetition_penalty", why = "must be greater than 0";
    else if (!(min_p >= 0.0f && min_p <= 1.0f)) bad = "min_p", why = "must be in [0, 1]";
    if (rule) *rule = why;
    return bad;
}

#endif
