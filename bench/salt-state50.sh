#!/usr/bin/env bash
# Salt's side of the 50-resource benchmark: `salt-call --local state.apply` of a state of the
# same shape as drover's (48 file.managed rendered from a Jinja template + 2 long-running
# processes, checked idempotently), first run and idempotent runs. Prints "name value unit".
#
# Usage: bench/salt-state50.sh [RUNS]     (idempotent runs, default 5)
# Environment: SALT_VENV (a venv with salt installed; default: make one in a temp dir)
set -euo pipefail
RUNS="${1:-5}"
W="$(mktemp -d "${TMPDIR:-/tmp}/salt-state50.XXXXXX")"
cleanup() { for p in "$W"/daemon-*.pid; do [[ -e $p ]] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT
if [[ -z "${SALT_VENV:-}" ]]; then
  SALT_VENV="$W/venv"
  python3 -m venv "$SALT_VENV" >&2
  "$SALT_VENV/bin/pip" install -q salt >&2
fi
OUT="$W/out"
mkdir -p "$W/srv/bench/files" "$OUT" "$W/etc"
{
  for i in $(seq -w 1 48); do
    cat <<SLS
file-$i:
  file.managed:
    - name: $OUT/f$i.conf
    - source: salt://bench/files/f.conf.j2
    - template: jinja
    - context: {n: $i}
SLS
  done
  for d in 1 2; do
    cat <<SLS
daemon-$d:
  cmd.run:
    - name: nohup sleep 100000 >/dev/null 2>&1 & echo \$! > $W/daemon-$d.pid
    - unless: test -e $W/daemon-$d.pid && kill -0 \$(cat $W/daemon-$d.pid)
SLS
  done
} > "$W/srv/bench/init.sls"
cat > "$W/srv/bench/files/f.conf.j2" <<'J2'
# managed by salt
id = {{ grains['id'] }}
os = {{ grains['os'] }}
n = {{ n }}
{% for i in range(3) %}
item{{ i }} = {{ i * 10 }}
{% endfor %}
J2
cat > "$W/etc/minion" <<CONF
id: bench-local
root_dir: $W/root
user: $(id -un)
file_client: local
file_roots: {base: [$W/srv]}
pillar_roots: {base: []}
log_level_logfile: warning
CONF
now() { date +%s.%N; }
call() { "$SALT_VENV/bin/salt-call" -c "$W/etc" --local --out=json state.apply bench >"$W/last.json" 2>"$W/last.err"; }
t0=$(now); call; t1=$(now)
echo "salt_call_state50_first $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') s"
ok=$("$SALT_VENV/bin/python" -c "import json;d=json.load(open('$W/last.json'))['local'];print(sum(1 for v in d.values() if v['result']))")
echo "salt_call_state50_first_ok $ok states"
ts=()
for _ in $(seq "$RUNS"); do t0=$(now); call; t1=$(now); ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')"); done
echo "salt_call_state50_idempotent_median $(printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}') s"
changed=$("$SALT_VENV/bin/python" -c "import json;d=json.load(open('$W/last.json'))['local'];print(sum(1 for v in d.values() if v['changes']))")
echo "salt_call_state50_idempotent_changed $changed states"
