#!/bin/bash
# ab.sh <tree before> <tree after> <rounds>: alternate ab.py between the two trees.
here=$(dirname "$0")
for round in $(seq "$3"); do
  TAG="before(round $round)" python "$here/ab.py" "$1" 2>/dev/null | grep images/s
  TAG="after(round $round)" python "$here/ab.py" "$2" 2>/dev/null | grep images/s
done
