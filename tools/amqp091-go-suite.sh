#!/usr/bin/env bash
# Runs the Go client amqp091-go's own integration tests against a broker, for differential checks.
# The suite comes from Debian's golang-github-rabbitmq-amqp091-go-dev (1.5.0); nothing of it is
# kept in this repository. Needs root for apt-get the first time.
#
#   tools/amqp091-go-suite.sh amqp://guest:guest@127.0.0.1:5672/   # Warren (npm start)
#   tools/amqp091-go-suite.sh amqp://guest:guest@127.0.0.1:5682/   # reference RabbitMQ
#
# Prints the failures and a summary; the full log is in $WORK/last.log. Three of its tests run only
# against product 'RabbitMQ' (which Warren's connection.start names, see README).
set -euo pipefail
URL=${1:?usage: $0 AMQP_URL}
WORK=${WORK:-/tmp/amqp091-go-suite}
SRC=/usr/share/gocode/src

if [ ! -d "$SRC/github.com/rabbitmq/amqp091-go" ] || ! command -v go >/dev/null; then
  apt-get install -y golang-go golang-github-rabbitmq-amqp091-go-dev >/dev/null
fi
if [ ! -x "$WORK/amqp091.test" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK/gopath/src/github.com/rabbitmq" "$WORK/gopath/src/go.uber.org"
  cp -r "$SRC/github.com/rabbitmq/amqp091-go" "$WORK/gopath/src/github.com/rabbitmq/"
  cp -r "$SRC/go.uber.org/goleak" "$WORK/gopath/src/go.uber.org/"
  (cd "$WORK/gopath/src/github.com/rabbitmq/amqp091-go" &&
    GO111MODULE=off GOPATH="$WORK/gopath" go test -tags integration -c -o "$WORK/amqp091.test" .)
fi
cd "$WORK/gopath/src/github.com/rabbitmq/amqp091-go"
set +e
AMQP_URL=$URL "$WORK/amqp091.test" -test.v -test.timeout 600s >"$WORK/last.log" 2>&1
rc=$?
set -e
grep -E '^--- FAIL|^panic|^goleak' "$WORK/last.log" || true
pass=$(grep -c -- '^--- PASS' "$WORK/last.log" || true)
fail=$(grep -c -- '^--- FAIL' "$WORK/last.log" || true)
echo "passed $pass, failed $fail, exit $rc; log: $WORK/last.log"
exit $rc
