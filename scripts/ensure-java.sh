#!/usr/bin/env bash
# Java 17+ for the Spark engine's tests (pyspark 4 starts a JVM): Debian's
# openjdk-17-jre-headless, installed with apt-get when no suitable `java` is found (as
# root, or through passwordless sudo). Idempotent: with Java 17+ present it returns at once.
set -euo pipefail
java_major() {
  local bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$bin" >/dev/null 2>&1 || { echo 0; return; }
  "$bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1
}
if [ "$(java_major)" -ge 17 ] 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "ensure-java: the Spark tests need Java 17+; as root:" >&2
  echo "  apt-get install -y --no-install-recommends openjdk-17-jre-headless" >&2
  exit 1
fi
echo "Installing Debian's openjdk-17-jre-headless for the Spark tests (apt-get, first run: ~1 min)"
export DEBIAN_FRONTEND=noninteractive
LOG=/tmp/tagsmith-apt-java.log
install=("${SUDO[@]}" apt-get install -y -q --no-install-recommends openjdk-17-jre-headless)
if ! "${install[@]}" >"$LOG" 2>&1; then
  # A fresh machine may have no package lists yet.
  "${SUDO[@]}" apt-get update -q >>"$LOG" 2>&1
  "${install[@]}" >>"$LOG" 2>&1 || {
    echo "ensure-java: apt-get could not install openjdk-17-jre-headless; see $LOG" >&2
    tail -20 "$LOG" >&2
    exit 1
  }
fi
unset JAVA_HOME
[ "$(java_major)" -ge 17 ] 2>/dev/null || { echo "ensure-java: no Java 17+ on PATH after installing" >&2; exit 1; }
