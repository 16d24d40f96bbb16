# Shell functions shared by bench/callgrind and bench/ab (sourced).

# wait_line FILE PATTERN PID: until FILE has a line matching PATTERN; fails
# with the file's contents if PID exits first, or after two minutes (valgrind starts slowly).
wait_line() {
  local _
  for _ in $(seq 1200); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { cat "$1" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench/${0##*/}: timeout waiting for '$2' in $1" >&2
  exit 1
}
