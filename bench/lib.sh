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
