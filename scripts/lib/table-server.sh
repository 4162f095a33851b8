# Shared by scripts that start their own table-server (bench.sh,
# bench-memory.sh); sourced, not run. The caller defines log().

# wait_listening <pid> <log file> <address file>: waits up to 20 s for the
# table-server with that PID (started with --address-file <address file>) to
# listen, and prints its address; fails (after saying why, with the log) if
# the server exits or does not start in time.
wait_listening() {
  local pid=$1 log_file=$2 address_file=$3 tenths=0
  until [[ -s $address_file ]]; do
    kill -0 "$pid" 2>/dev/null || { log "table-server exited:"; cat "$log_file" >&2; return 1; }
    ((tenths++ < 200)) || { log "table-server did not start in 20 s"; return 1; }
    sleep 0.1
  done
  cat "$address_file"
}
