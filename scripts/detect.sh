#!/usr/bin/env bash
# The main job: ChatRex-7B detection on a photo, weights downloaded on first use.
#   scripts/detect.sh [IMAGE] [CATEGORIES] [extra chatrex example flags...]
# Downloads (once): IDEA-Research/ChatRex-7B (~15.7 GB, into the Hugging Face cache) and
# upn_large.pth (GitHub release) into checkpoints/. Needs ~17 GB of RAM on the CPU (f16).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p checkpoints
upn=checkpoints/upn_large.pth
if [ ! -s "$upn" ]; then
  curl -fL -o "$upn.part" https://github.com/IDEA-Research/ChatRex/releases/download/upn-large/upn_large.pth
  mv "$upn.part" "$upn"
fi
image="${1:-checkpoints/test_chatrex_detection.jpg}"
if [ ! -s "$image" ] && [ "$image" = checkpoints/test_chatrex_detection.jpg ]; then
  curl -fL -o "$image" https://raw.githubusercontent.com/IDEA-Research/ChatRex/main/tests/images/test_chatrex_detection.jpg
fi
categories="${2:-person; pigeon}"
shift $(( $# > 2 ? 2 : $# ))
exec cargo run --release --example chatrex -- detect --categories "$categories" \
  --model IDEA-Research/ChatRex-7B --upn "$upn" --image "$image" --output detect.png "$@"
