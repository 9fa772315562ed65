#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/block.sh: 4 KiB random read and random write IOPS and p99 completion latency at iodepth
# 1 and 32, through fio's nbd engine over a Unix socket, for sov-block (fsync on; fio sends no
# FLUSH, so no engine syncs) against two peers serving a raw file on the same disk: qemu-nbd
# (defaults: cache=writeback, aio=threads; --shared so it takes many connections, --persistent)
# and nbdkit's file plugin (defaults). Every export is pre-filled with the same random bytes so
# no engine measures first allocation. Each server is pinned to one CPU and fio to another;
# measurements alternate between servers (the order rotates per run) so drift in the machine
# hits all alike. The last line is `ratio <min(read, write) of sov-block / best peer at iodepth
# 32>` (medians of the runs).
#
# Environment: BENCH_DURATION (seconds per measurement, default 5), BENCH_RUNS (default 2),
# BENCH_WARMUP (seconds per server and direction at iodepth 32, default 1, not counted),
# BENCH_SIZE_MIB (export size, default 256), BENCH_SERVER_CPU (default 0), BENCH_CLIENT_CPU
# (default 1), BENCH_DIR (where the data lives, default a temp dir under $TMPDIR or /tmp),
# SOV_BLOCK (the binary, default bin/sov-block or build/src/block/sov-block), PYTHON (default
# /usr/bin/python3).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-5}
runs=${BENCH_RUNS:-2}
warmup=${BENCH_WARMUP:-1}
size_mib=${BENCH_SIZE_MIB:-256}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
python=${PYTHON:-/usr/bin/python3}

die() {
    echo "bench/block.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

sov_bin=
for b in ${SOV_BLOCK:-} "$root/bin/sov-block" "$root/build/src/block/sov-block"; do
    if [[ -x $b ]]; then
        sov_bin=$b
        break
    fi
done
[[ -n $sov_bin ]] || die "no sov-block in $root/bin or $root/build/src/block (run make)"
for tool in fio qemu-nbd nbdkit nbdcopy nbdinfo taskset curl "$python"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
fio --enghelp 2>/dev/null | grep -qx $'\tnbd' || die "this fio has no nbd engine"

tmp=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/sov-bench-block.XXXXXX")
sov_pid=
qemu_pid=
nbdkit_pid=
fio_pid=

# Stops one process we started: SIGTERM, SIGKILL if it lingers.
cleanup() {
    stop_pid "$fio_pid"
    stop_pid "$sov_pid"
    stop_pid "$qemu_pid"
    stop_pid "$nbdkit_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until an NBD server answers on a Unix socket with an export of the expected size.
wait_nbd() {
    local name=$1 pid=$2 uri=$3 log=$4 i
    for ((i = 0; i < 100; i++)); do
        check_alive "$name" "$pid" "$log"
        if [[ $(nbdinfo --size "$uri" 2>/dev/null) == "$((size_mib * 1048576))" ]]; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name does not serve $uri"
}

# The bytes every export starts with: random, so no engine can shortcut zeros.
head -c "$((size_mib * 1048576))" /dev/urandom >"$tmp/fill.raw"
cp "$tmp/fill.raw" "$tmp/qemu.raw"
cp "$tmp/fill.raw" "$tmp/nbdkit.raw"
sync

# sov-block: one volume, filled through NBD so that every cluster is allocated and flushed.
cat >"$tmp/sov.ini" <<EOF
[server]
listen = 127.0.0.1:0
access_log = false

[log]
level = warn

[block]
data_dir = $tmp/sov
fsync = true
io = ${SOV_BLOCK_IO:-uring}

[nbd]
listen =
socket = $tmp/sov.sock
EOF
mkdir -p "$tmp/sov"
start_sov sov-block "$sov_bin"
curl -sf --max-time 10 -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench\",\"size\":$((size_mib * 1048576))}" \
    "http://127.0.0.1:$sov_port/v1/volumes" || die "sov-block: creating the volume failed"
sov_uri="nbd+unix:///bench?socket=$tmp/sov.sock"
wait_nbd sov-block "$sov_pid" "$sov_uri" "$tmp/sov.log"
nbdcopy --flush "$tmp/fill.raw" "$sov_uri" || die "sov-block: filling the volume failed"

taskset -c "$server_cpu" qemu-nbd -f raw -k "$tmp/qemu.sock" --shared=64 --persistent \
    -x bench "$tmp/qemu.raw" >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
qemu_uri="nbd+unix:///bench?socket=$tmp/qemu.sock"
wait_nbd qemu-nbd "$qemu_pid" "$qemu_uri" "$tmp/qemu.log"

taskset -c "$server_cpu" nbdkit -f -U "$tmp/nbdkit.sock" -e bench file "$tmp/nbdkit.raw" \
    >"$tmp/nbdkit.log" 2>&1 &
nbdkit_pid=$!
nbdkit_uri="nbd+unix:///bench?socket=$tmp/nbdkit.sock"
wait_nbd nbdkit "$nbdkit_pid" "$nbdkit_uri" "$tmp/nbdkit.log"

# Before measuring: all three serve the very same bytes.
want=$(sha256sum <"$tmp/fill.raw" | cut -d' ' -f1)
for uri in "$sov_uri" "$qemu_uri" "$nbdkit_uri"; do
    got=$(nbdcopy "$uri" - | sha256sum | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "$uri does not serve the fill data"
done
rm -f "$tmp/fill.raw"

declare -A pids=([sov-block]=$sov_pid [qemu-nbd]=$qemu_pid [nbdkit]=$nbdkit_pid)
declare -A uris=([sov-block]=$sov_uri [qemu-nbd]=$qemu_uri [nbdkit]=$nbdkit_uri)
declare -A logs=([sov-block]=$tmp/sov.log [qemu-nbd]=$tmp/qemu.log [nbdkit]=$tmp/nbdkit.log)

# One fio run; sets iops and p99 (ms). fio runs in the background so an interrupt reaches the
# trap at once. An I/O error makes the numbers meaningless and fails the benchmark.
fio_run() {
    local who=$1 rw=$2 qd=$3 secs=$4
    taskset -c "$client_cpu" fio --name=bench --ioengine=nbd --uri="${uris[$who]}" --rw="$rw" \
        --bs=4k --iodepth="$qd" --size="${size_mib}m" --time_based --runtime="$secs" \
        --norandommap --randrepeat=0 --percentile_list=99 --output-format=json \
        >"$tmp/fio.json" 2>"$tmp/fio.err" &
    fio_pid=$!
    wait "$fio_pid" || {
        cat "$tmp/fio.err" "$tmp/fio.json" >&2
        die "fio failed against $who"
    }
    fio_pid=
    check_alive "$who" "${pids[$who]}" "${logs[$who]}"
    read -r iops p99 < <("$python" - "$tmp/fio.json" "${rw#rand}" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
if job["error"]:
    sys.exit(f"fio error {job['error']}")
side = job[sys.argv[2]]
if side["total_ios"] == 0:
    sys.exit("no I/O completed")
pct = side["clat_ns"]["percentile"]
print(f"{side['iops']:.1f} {pct['99.000000'] / 1e6:.3f}")
EOF
    ) || die "no usable fio result against $who"
}

servers=(sov-block qemu-nbd nbdkit)
echo "bench block: $sov_bin vs $(qemu-nbd --version | head -n1) vs" \
    "$(nbdkit --version | head -n1), ${size_mib} MiB pre-filled exports in $tmp"
echo "bench block: fio nbd engine, 4 KiB, ${duration}s per measurement, $runs runs," \
    "servers on CPU $server_cpu, fio on CPU $client_cpu"

if [[ $warmup != 0 ]]; then
    for who in "${servers[@]}"; do
        for rw in randread randwrite; do
            fio_run "$who" "$rw" 32 "$warmup"
        done
    done
fi

declare -A all_iops all_p99
for ((r = 1; r <= runs; r++)); do
    # Rotate who goes first so no server always runs right after another's writes.
    order=("${servers[@]:$(((r - 1) % 3))}" "${servers[@]:0:$(((r - 1) % 3))}")
    for qd in 1 32; do
        for rw in randread randwrite; do
            for who in "${order[@]}"; do
                fio_run "$who" "$rw" "$qd" "$duration"
                key="$who $rw $qd"
                all_iops[$key]+="$iops "
                all_p99[$key]+="$p99 "
                printf 'run %d %-9s %-9s qd%-2s %10.0f IOPS   p99 %8.3f ms\n' "$r" "$who" "$rw" \
                    "$qd" "$iops" "$p99"
            done
        done
    done
done

declare -A med
for qd in 1 32; do
    for rw in randread randwrite; do
        for who in "${servers[@]}"; do
            key="$who $rw $qd"
            # shellcheck disable=SC2086 # split the list into its numbers
            med[$key]=$(median ${all_iops[$key]})
            # shellcheck disable=SC2086
            printf 'median %-9s %-9s qd%-2s %10.0f IOPS   p99 %8.3f ms\n' "$who" "$rw" "$qd" \
                "${med[$key]}" "$(median ${all_p99[$key]})"
        done
    done
done

if [[ -s $tmp/sov.log ]]; then
    echo "bench/block.sh: sov-block logged $(wc -l <"$tmp/sov.log") line(s); the last:" >&2
    tail -n 5 "$tmp/sov.log" >&2
fi

ratios=()
for rw in randread randwrite; do
    best=0 best_who=
    for who in qemu-nbd nbdkit; do
        if awk -v a="${med[$who $rw 32]}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
            best=${med[$who $rw 32]}
            best_who=$who
        fi
    done
    r=$(awk -v a="${med[sov-block $rw 32]}" -v b="$best" 'BEGIN { printf "%.3f", a / b }')
    echo "sov-block/$best_who $rw qd32 $r"
    ratios+=("$r")
done
awk -v a="${ratios[0]}" -v b="${ratios[1]}" 'BEGIN { printf "ratio %.3f\n", (a < b ? a : b) }'
