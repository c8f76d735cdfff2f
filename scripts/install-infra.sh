#!/usr/bin/env bash
# Gathers the jars of the local infrastructure, Apache Kafka and Apache Cassandra, from Maven
# Central into a cache outside the repository (TICKETING_INFRA_HOME, default
# ~/.cache/ticketing/infra). The pinned versions are in infra/local/*/pom.xml; a component is
# fetched again only when its pom changes. Needs Java 17+ and Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

INFRA_HOME="${TICKETING_INFRA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ticketing/infra}"

missing() {
    echo "install-infra: $1" >&2
    exit 1
}

java_major() {
    # `openjdk version "17.0.15" 2025-04-15` -> 17; `"1.8.0_392"` -> 1
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

check_tools() {
    command -v java >/dev/null 2>&1 ||
        missing "Java is not installed (Kafka and Cassandra need a JDK 17 or newer on PATH, e.g. Debian's openjdk-17-jdk-headless)"
    local major
    major="$(java_major)"
    if [ -z "$major" ] || [ "$major" -lt 17 ]; then
        missing "Java 17 or newer is needed; \`java -version\` says: $(java -version 2>&1 | head -n 1)"
    fi
    command -v mvn >/dev/null 2>&1 ||
        missing "Maven is not installed (\`mvn\` fetches the Kafka and Cassandra jars from Maven Central; e.g. Debian's maven)"
}

install() {
    local name="$1"
    local pom="infra/local/$name/pom.xml"
    local target="$INFRA_HOME/$name"
    local stamp
    stamp="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [ -f "$target/installed" ] && [ "$(cat "$target/installed")" = "$stamp" ] && [ -d "$target/lib" ]; then
        return 0
    fi
    check_tools
    local started=$SECONDS
    echo "install-infra: fetching $name ($(sed -n 's:.*<artifactId>\(kafka_2.13\|cassandra-all\)</artifactId>.*:\1:p' "$pom") $(sed -n '0,/<version>/s:.*<version>\(.*\)</version>.*:\1:p' "$pom")) from Maven Central into $target ..." >&2
    rm -rf "$target/lib.partial"
    mkdir -p "$target"
    local log="$target/mvn.log"
    if ! mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$target/lib.partial" >"$log" 2>&1; then
        cat "$log" >&2
        missing "Maven could not resolve $pom (is Maven Central reachable?); its output is above and in $log"
    fi
    rm -rf "$target/lib"
    mv "$target/lib.partial" "$target/lib"
    echo "$stamp" >"$target/installed"
    echo "install-infra: $name ready ($(ls "$target/lib" | wc -l) jars, $((SECONDS - started)) s)" >&2
}

install kafka
install cassandra
