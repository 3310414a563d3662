#!/usr/bin/env bash
# The one-shot demo: index the demo catalogue (demo/catalogue.csv, the shared sample footage cut
# into 5 programmes / 11 episodes) with the two offline teachers, then answer a few queries,
# recommendations and a query by example.
# Run through `make demo`, which sets up the environment first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TVINDEX_SHARED_DIR:-}" ] || [ ! -d "$TVINDEX_SHARED_DIR/media/video" ] \
        || [ ! -d "${TVINDEX_MODEL_DIR:-$TVINDEX_SHARED_DIR/models}" ]; then
    cat >&2 <<'MSG'
demo: the sample footage and models were not found.
Set TVINDEX_SHARED_DIR to the shared kit (the folder holding media/video/ and models/; it sits
beside this repository as ../shared on our machines), e.g.
    TVINDEX_SHARED_DIR=/path/to/shared make demo
MSG
    exit 2
fi
run() { echo; echo "\$ tvindex $*"; tvindex --config demo/config.yaml "$@"; }
run index demo/catalogue.csv
run status
run search "object:bicycle" --level shot --limit 3
run search "object:person" --level programme --limit 3
run search 'object:car -object:person programme:"Ciutat en bici"' --level shot --limit 3
run search "object:car then object:person" --limit 3
run search "object:person" --level episode --sort air_date --facets --limit 3
run export search "object:bicycle" --format edl
run labels --set coco80 --match bi
run vectors status
run similar programme la-placa --limit 3
run similar shot bici-01@2 --limit 3
run similar image "$TVINDEX_SHARED_DIR/media/images/dog.jpg" --limit 3
run tag "$TVINDEX_SHARED_DIR/media/video/bikes.mp4" --sampling shots --top 5 --no-progress
