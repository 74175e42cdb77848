#!/usr/bin/env bash
# One go on a GPU machine: record the environment, install what is missing without
# a package index, run `python -m benchmarks.gpu_check` within a time budget, and
# write one small report.
#
#   bash benchmarks/gpu_session.sh [REPORT_DIR] [--budget SECONDS] [--wheels DIR]
#                                  [-- GPU_CHECK_FLAGS...]
#
# REPORT_DIR   where the report goes (default $PORTNET_GPU_REPORT_DIR, else
#              benchmarks/results/gpu_session): gpu_session.md (the report: the
#              session, then gpu_check's own report), gpu_session.log (everything
#              printed: pip list, nvidia-smi, gpu_check's output) and logs/ (each
#              library's pytest log and XML).
# --budget     seconds for the whole session, install included (default
#              $PORTNET_GPU_BUDGET, else 480); gpu_check gets what is left, less a
#              margin for the report, and is killed if it overruns.
# --wheels     a folder of wheels carried with the working tree (default
#              $PORTNET_WHEELS, else ./wheels if it exists). Every wheel there whose
#              package is not installed is installed from it with --no-index (CuPy's
#              and JAX's CUDA wheels only for the driver's CUDA major version);
#              nothing already installed is changed. portnet itself is installed
#              editable with --no-build-isolation --no-index when the environment's
#              setuptools is >= 77, else with setuptools taken from the folder.
#
# The exit code is gpu_check's: 0 passed, 1 failed or unfinished, 2 no GPU library
# works; 124 when it had to be killed at the budget, 3 for a bad argument. The
# report is written in every case, also on SIGTERM.
#
# Stand-ins for trying it without a GPU: PORTNET_GPU_SESSION_CHECK replaces the
# gpu_check command, and gpu_check's own switches (PORTNET_GPU_CHECK_EMULATE=cupy,
# PORTNET_GPU_CHECK_PYTEST) pass through; a fake `nvidia-smi` can go first on PATH.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here" || exit 3
start=$(date +%s)

budget=${PORTNET_GPU_BUDGET:-480}
report_dir=${PORTNET_GPU_REPORT_DIR:-}
wheels=${PORTNET_WHEELS:-}
check_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --budget) budget=${2:-}; shift 2 || { echo "error: --budget needs seconds" >&2; exit 3; } ;;
        --wheels) wheels=${2:-}; shift 2 || { echo "error: --wheels needs a folder" >&2; exit 3; } ;;
        -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; check_args=("$@"); break ;;
        -*) echo "error: unknown option $1 (see --help)" >&2; exit 3 ;;
        *) report_dir=$1; shift ;;
    esac
done
case "$budget" in
    ''|*[!0-9]*) echo "error: --budget takes whole seconds, got '$budget'" >&2; exit 3 ;;
esac
report_dir=${report_dir:-$here/benchmarks/results/gpu_session}
if [ -z "$wheels" ] && [ -d "$here/wheels" ]; then wheels=$here/wheels; fi
mkdir -p "$report_dir" || { echo "error: cannot create the report folder $report_dir" >&2; exit 3; }
report_dir=$(cd "$report_dir" && pwd)
report=$report_dir/gpu_session.md
log=$report_dir/gpu_session.log
: > "$log"
work=$(mktemp -d "${TMPDIR:-/tmp}/portnet-gpu-session.XXXXXX")
notes=$work/notes.md
: > "$notes"
check_rc=""

say() { echo "[gpu_session] $*" | tee -a "$log"; }
note() { echo "- $*" >> "$notes"; }
# Run a command with its output in the log; returns its exit code.
logged() { echo "\$ $*" >> "$log"; "$@" >> "$log" 2>&1; }

PY=${PYTHON:-$(command -v python || command -v python3 || echo python3)}

# -- 1. what this machine has -----------------------------------------------------------
say "environment"
pyver=$("$PY" -V 2>&1)
note "python: $pyver ($PY)"
logged "$PY" -m pip list || note "**pip list failed** (exit $?; is pip installed for $PY?)"
driver=""
if command -v nvidia-smi > /dev/null 2>&1; then
    logged nvidia-smi
    gpus=$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>> "$log")
    while IFS= read -r line; do [ -n "$line" ] && note "GPU (nvidia-smi): $line"; done <<< "$gpus"
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
else
    note "**nvidia-smi not found**: no NVIDIA driver on this machine's PATH"
fi
# The CUDA major version whose wheels this driver runs (NVIDIA's minor-version
# compatibility: CUDA 13.x needs driver >= 580, CUDA 12.x >= 525).
driver_major=${driver%%.*}
cuda_major=""
case "$driver_major" in
    ''|*[!0-9]*) ;;
    *) if [ "$driver_major" -ge 580 ]; then cuda_major=13; elif [ "$driver_major" -ge 525 ]; then cuda_major=12; fi ;;
esac
[ -n "$driver" ] && note "driver $driver: CUDA ${cuda_major:-none (driver too old for CUDA 12)} wheels"

versions() {
    "$PY" - <<'EOF' 2>> "$log"
import importlib.metadata as md
names = ["numpy", "array-api-compat", "torch", "cupy-cuda12x", "cupy-cuda13x", "jax", "jaxlib",
         "jax-cuda12-plugin", "jax-cuda13-plugin", "pytest", "setuptools", "portnet"]
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
print(", ".join(found))
EOF
}

# -- 2. install what is missing, without an index ---------------------------------------
portnet_here() {
    # portnet importable with its mapped portnet.backends, from this checkout.
    (cd "$work" && "$PY" -c "
import os, sys
import portnet, portnet.backends
inside = os.path.realpath(portnet.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep)
sys.exit(0 if inside else 3)
" "$here") >> "$log" 2>&1
}

install_wheels() {
    [ -n "$wheels" ] || return 0
    if [ ! -d "$wheels" ]; then
        note "**wheels folder $wheels not found**: nothing installed from it"
        return 0
    fi
    installed=$("$PY" -m pip list --format=freeze 2>/dev/null | sed 's/==.*//' | tr 'A-Z_' 'a-z-')
    picks=()
    for file in "$wheels"/*.whl; do
        [ -e "$file" ] || continue
        name=$(basename "$file" | sed 's/-.*//' | tr 'A-Z_' 'a-z-')
        # CuPy's and JAX's CUDA wheels only for the CUDA major version the driver runs.
        case "$name" in
            cupy-cuda1[0-9]x) [ "$name" = "cupy-cuda${cuda_major}x" ] || continue ;;
            jax-cuda1[0-9]-*) case "$name" in "jax-cuda${cuda_major}-"*) ;; *) continue ;; esac ;;
        esac
        if ! grep -qx -- "$name" <<< "$installed"; then picks+=("$file"); fi
    done
    if [ ${#picks[@]} -eq 0 ]; then
        note "wheels in $wheels: nothing missing from this environment"
        return 0
    fi
    names=$(for f in "${picks[@]}"; do basename "$f"; done | tr '\n' ' ')
    if logged "$PY" -m pip install --no-index --no-deps "${picks[@]}"; then
        note "installed from $wheels (no index): $names"
    else
        note "**installing from $wheels failed** ($names): see gpu_session.log"
    fi
}

install_portnet() {
    if portnet_here; then
        note "portnet: already installed from this checkout"
        return 0
    fi
    modern=$("$PY" -c "import setuptools as s; print(int(s.__version__.split('.')[0]) >= 77)" 2>/dev/null)
    if [ "$modern" = "True" ]; then
        how="editable, --no-build-isolation --no-index (setuptools >= 77 is here)"
        logged "$PY" -m pip install --no-build-isolation --no-index --no-deps -e .
    elif [ -n "$wheels" ] && ls "$wheels"/setuptools-*.whl > /dev/null 2>&1; then
        how="editable, setuptools from $wheels in pip's build environment (--no-index)"
        logged "$PY" -m pip install --no-index --find-links "$wheels" --no-deps -e .
    else
        how="editable, from the package index (no setuptools >= 77 here or in a wheels folder)"
        logged "$PY" -m pip install --no-deps -e .
    fi
    if portnet_here; then
        note "portnet: installed ($how)"
    else
        note "**portnet could not be installed** ($how): see gpu_session.log"
    fi
}

say "install"
install_wheels
install_portnet
note "packages: $(versions)"

# JAX would otherwise reserve 75 % of the GPU beside CuPy's pool and torch's cache.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
note "XLA_PYTHON_CLIENT_PREALLOCATE=$XLA_PYTHON_CLIENT_PREALLOCATE"

# -- the report (written at the end, or on SIGTERM) -----------------------------------
finish() {
    local rc=$1 result
    case "$rc" in
        0) result="gpu_check passed (exit 0)" ;;
        1) result="gpu_check FAILED (exit 1): see its report below" ;;
        2) result="no GPU library works here (gpu_check exit 2)" ;;
        124|137) result="gpu_check did not finish within the session's budget and was killed (exit $rc)" ;;
        143) result="the session was stopped by SIGTERM" ;;
        *) result="gpu_check ended with exit code $rc" ;;
    esac
    {
        echo "# portnet GPU session"
        echo
        echo "**$result**"
        echo
        echo "- started $(date -u -d "@$start" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo "at $start"), wall time $(( $(date +%s) - start )) s of a ${budget} s budget, on $(hostname 2>/dev/null || echo '?')"
        cat "$notes"
        echo "- log: gpu_session.log; pytest logs and XML: logs/"
        echo
        if [ -s "$work/gpu_check.md" ]; then
            sed 's/^#/##/' "$work/gpu_check.md"
        else
            echo "## gpu_check wrote no report"
            echo
            echo "Its last lines:"
            echo
            echo '```'
            tail -n 40 "$work/gpu_check.out" 2>/dev/null
            echo '```'
        fi
    } > "$report.tmp" && mv -f "$report.tmp" "$report"
    cat "$report" >> "$log"
    say "report: $report ($result)"
    rm -rf "$work"
    exit "$rc"
}
child=""
on_signal() {
    # Pass the signal on: gpu_check then writes its report, which goes into ours.
    if [ -n "$child" ]; then
        kill -TERM "$child" 2> /dev/null
        ( sleep 15; kill -KILL "$child" ) > /dev/null 2>&1 &
        local watchdog=$!
        wait "$child" 2> /dev/null
        kill "$watchdog" 2> /dev/null
    fi
    finish 143
}
trap on_signal TERM INT

# -- 3. gpu_check within what is left of the budget -------------------------------------
left=$(( budget - ($(date +%s) - start) ))
margin=$(( left / 5 < 30 ? left / 5 : 30 ))  # for gpu_check's own stop and the report
check_budget=$(( left - margin ))
if [ "$check_budget" -lt 1 ]; then
    note "**no time left for gpu_check** (${left} s of the budget after the install)"
    finish 124
fi
if [ -n "${PORTNET_GPU_SESSION_CHECK:-}" ]; then
    read -r -a command <<< "$PORTNET_GPU_SESSION_CHECK"
else
    command=("$PY" -m benchmarks.gpu_check)
fi
command+=(--budget "$check_budget" --out "$work/gpu_check.md" --logs "$report_dir/logs")
command+=(${check_args[@]+"${check_args[@]}"})
note "gpu_check: \`${command[*]}\` (killed after $(( left - 2 )) s)"
say "gpu_check, budget ${check_budget} s"
if command -v timeout > /dev/null 2>&1; then
    # SIGTERM first (gpu_check then writes its report), SIGKILL 2 s later.
    timeout -k 2 "$(( left - 2 ))" "${command[@]}" > "$work/gpu_check.out" 2>&1 &
else
    "${command[@]}" > "$work/gpu_check.out" 2>&1 &
fi
child=$!
wait "$child"; check_rc=$?
child=""
cat "$work/gpu_check.out" >> "$log"
finish "$check_rc"
