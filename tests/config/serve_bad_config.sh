#!/bin/sh
# `moeserve serve` with a bad --extra_llm_api_options file: exit code 2 and a
# one-line error naming file, line and key; a config.json beyond the engine's
# limits and a model too big for the host are refused the same way before any
# allocation. $1: the moeserve binary, $2: moeserve-mkmodel.
set -u
exe=$1 mk=${2:-}
dir=$(mktemp -d /tmp/ms-serve-cfg-XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
check() { # name expected-rc needle args...
    name=$1 want=$2 needle=$3
    shift 3
    "$exe" serve "$@" >"$dir/out" 2>"$dir/err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit $rc, want $want"; cat "$dir/err"; fail=1
    elif [ -n "$needle" ] && ! grep -qF -- "$needle" "$dir/err"; then
        echo "FAIL $name: stderr lacks '$needle':"; cat "$dir/err"; fail=1
    else
        echo "ok $name"
    fi
}
printf 'moe_config:\n  load_balancer:\n    num_slots: abc\n' >"$dir/bad.yaml"
check bad-value 2 "$dir/bad.yaml:3: key 'moe_config.load_balancer.num_slots': expected a positive integer, got 'abc'" \
    --extra_llm_api_options "$dir/bad.yaml" deepseek-ai/DeepSeek-R1-0528
printf 'kv_cache_config:\n  dtype: fp8\n  colour: blue\n' >"$dir/unknown.yaml"
check unknown-key 2 "$dir/unknown.yaml:3: key 'kv_cache_config.colour': unknown key" \
    some/model --extra_llm_api_options="$dir/unknown.yaml"
printf 'a: [1, 2\n' >"$dir/syntax.yaml"
check syntax 2 "$dir/syntax.yaml:2: YAML syntax error" some/model --extra_llm_api_options "$dir/syntax.yaml"
check missing-file 2 "$dir/none.yaml: cannot read" some/model --extra_llm_api_options "$dir/none.yaml"
check bad-flag 2 "option '--max_batch_size': expected a positive integer, got 'x'" some/model --max_batch_size x
check no-model 2 "missing MODEL" --tp_size 1
check help 0 "" --help
if [ -n "$mk" ]; then
    "$mk" --preset tiny --dtype bf16 --config-only --out "$dir/m" >/dev/null || { echo "FAIL mkmodel"; exit 1; }
    cp "$dir/m/config.json" "$dir/config.orig"
    sed 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 1000000000/' "$dir/config.orig" >"$dir/m/config.json"
    check huge-layers 2 "config.json: key num_hidden_layers: 1000000000 is beyond the supported 1024" "$dir/m" \
        --load_format dummy --port 18559
    # within the limits but far more than any host: 1000 layers of hidden 30000 (~600 GiB of weights)
    sed -e 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 1000/' -e 's/"hidden_size": *[0-9]*/"hidden_size": 30000/' \
        "$dir/config.orig" >"$dir/m/config.json"
    check too-big 2 "GiB free for it: lower max_batch_size" "$dir/m" --load_format dummy --port 18559
    cp "$dir/config.orig" "$dir/m/config.json"
    # the NCCL data plane on CPU ranks (or a build without NCCL): refused at startup, both ranks exit
    if command -v mpirun >/dev/null; then
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
            timeout 60 mpirun -np 2 --oversubscribe "$exe" serve "$dir/m" --load_format dummy --device cpu \
            --data_plane nccl --port 18561 >"$dir/out" 2>"$dir/err"
        rc=$?
        if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
            echo "FAIL nccl-on-cpu: exit $rc (want a startup error)"; cat "$dir/err"; fail=1
        elif ! grep -qE "moeserve.data_plane: nccl( needs the cuda backend|: this build has no NCCL)" "$dir/err"; then
            echo "FAIL nccl-on-cpu: stderr lacks the moeserve.data_plane error:"; cat "$dir/err"; fail=1
        else
            echo "ok nccl-on-cpu (exit $rc)"
        fi
    fi
fi
exit $fail
