#!/usr/bin/env bash
# Runs tools/java-perf/JPerf.java (a PerfTest-style load generator on the RabbitMQ Java client,
# which writes every publish to the socket on its own) against a broker on this machine, and
# reports the broker's CPU over the run from /proc. Needs Debian's default-jdk and
# librabbitmq-client-java (installed on first use; root).
#
#   tools/java-perf.sh PORT [JPerf options]      e.g.
#   tools/java-perf.sh 5672 --duration 8                                   # (a)
#   tools/java-perf.sh 5672 --duration 8 --persistent --durable --confirm 1000 --ack-every 100 --prefetch 1000   # (c)
#   tools/java-perf.sh 5672 --duration 8 --churn 4                         # connection churn
set -euo pipefail
PORT=${1:?usage: $0 PORT [options]}; shift
HERE=$(cd "$(dirname "$0")" && pwd)
CP=/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar
if ! command -v javac >/dev/null || [ ! -f /usr/share/java/amqp-client.jar ]; then
  apt-get install -y default-jdk-headless librabbitmq-client-java libslf4j-java >/dev/null
fi
OUT=${TMPDIR:-/tmp}/warren-java-perf
mkdir -p "$OUT"
[ "$OUT/JPerf.class" -nt "$HERE/java-perf/JPerf.java" ] || javac -d "$OUT" -cp "$CP" "$HERE/java-perf/JPerf.java"
PID=$(ss -ltnp "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
ticks() { [ -n "$PID" ] && awk '{print $14 + $15}' "/proc/$PID/stat" || echo 0; }
T0=$(ticks)
java -Xmx2g -cp "$CP:$OUT" JPerf "amqp://guest:guest@127.0.0.1:$PORT" "$@"
T1=$(ticks)
echo "broker pid ${PID:-?}: $(( T1 - T0 )) CPU ticks ($(getconf CLK_TCK)/s) during the run"
