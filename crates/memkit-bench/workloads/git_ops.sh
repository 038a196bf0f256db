# git: operations on a generated repository. The harness generates the
# source trees INPUT/snap0 .. INPUT/snap<N-1> (text files) beforehand, then
# runs this script under the allocator, in an empty directory, as
# `sh git_ops.sh N INPUT`: commit each snapshot in turn, then log, diff,
# a full repack (delta search), prune, fsck and grep. Prints `ok` when the history checks out.
set -eu
snaps=$1
input=$2
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$PWD"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
git init -q -b main repo
cd repo
git config gc.auto 0
i=0
while [ "$i" -lt "$snaps" ]; do
    # Replace the tree with the next snapshot and commit it.
    find . -path ./.git -prune -o -type f -exec rm -f {} +
    cp -R "$input/snap$i/." .
    git add -A
    git commit -q -m "snapshot $i"
    i=$((i + 1))
done
git log --stat --oneline >/dev/null
git diff HEAD~1 HEAD >/dev/null
git repack -a -d -f -q --window=50 --depth=50
git prune
git fsck --no-progress --full
test "$(git rev-list --count HEAD)" = "$snaps"
git grep -c needle HEAD >/dev/null
echo ok
