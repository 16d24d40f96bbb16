# Shell functions shared by bench/run, bench/callgrind and bench/ab (sourced).

# wait_for FILE PATTERN SECONDS PID: until FILE has a line matching
# PATTERN; returns 1, with the file's contents, if PID exits first or the
# time runs out.
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || { echo "process $4 died; its log:" >&2; cat "$1" >&2; return 1; }
    sleep 0.1
  done
  echo "timeout waiting for '$2' in $1" >&2
  return 1
}

# ticks PID...: utime+stime of the processes, summed, in clock ticks.
ticks() {
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$t"
}

# kticks PID...: stime alone (the kernel's share), summed, in clock ticks.
kticks() {
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $15}' "/proc/$pid/stat"))); done
  echo "$t"
}

# machine_ticks: "ALL STEAL" from /proc/stat's first line, in clock ticks:
# the time of all CPUs, and the part of it the hypervisor gave to other
# guests (steal). A shared VM's steal moves req/s by more than most
# changes do, so each run reports it.
machine_ticks() {
  awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9; exit}' /proc/stat
}

# steal_pct "ALL0 STEAL0" "ALL1 STEAL1": the steal share between two
# machine_ticks readings, in percent of all CPU time.
steal_pct() {
  local a0 s0 a1 s1
  read -r a0 s0 <<<"$1"
  read -r a1 s1 <<<"$2"
  if ((a1 > a0)); then echo $(((s1 - s0) * 100 / (a1 - a0))); else echo 0; fi
}
