#!/usr/bin/env bash
# Offline WordNet 3.0 for NLTK (METEOR needs it): Debian's wordnet-base + wordnet-sense-index,
# presented to NLTK's WordNet corpus reader as <venv>/nltk_data/corpora/wordnet/, plus the
# `lexnames` file that the Debian packages do not ship, derived from the lexnames(5WN) man page.
#
# Usage: scripts/install_wordnet.sh [VENV]   (default: .venv)
# Idempotent. Never fails the install: without apt (or without root), or when the files are still
# missing, it prints why and exits 0, and molkit.eval.text reports METEOR as unavailable (NaN).
# Online alternative: `python -c "import nltk; nltk.download('wordnet')"`.
set -u

VENV="${1:-.venv}"
WN_SRC="${WORDNET_DIR:-/usr/share/wordnet}"
MAN_PAGE="${LEXNAMES_MAN:-/usr/share/man/man5/lexnames.5WN.gz}"
DEST="$VENV/nltk_data/corpora/wordnet"
NEEDED="data.noun index.noun data.verb index.verb data.adj index.adj data.adv index.adv noun.exc verb.exc adj.exc adv.exc index.sense"

say() { echo "install_wordnet: $*"; }

have_files() {
    for f in $NEEDED; do [ -s "$WN_SRC/$f" ] || return 1; done
    [ -s "$MAN_PAGE" ] || return 1
}

if ! have_files; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
        fi
        if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
            say "installing Debian packages wordnet-base wordnet-sense-index"
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                wordnet-base wordnet-sense-index >/dev/null 2>&1 \
                || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive \
                     apt-get install -y -q --no-install-recommends wordnet-base wordnet-sense-index >/dev/null 2>&1; } \
                || say "apt-get install failed"
        else
            say "apt-get needs root (or passwordless sudo); skipping the Debian packages"
        fi
    else
        say "apt-get not available; skipping the Debian packages"
    fi
fi

if ! have_files; then
    say "WordNet files not found under $WN_SRC (or $MAN_PAGE missing): METEOR will be reported as unavailable."
    say "Install them with: apt-get install wordnet-base wordnet-sense-index   (or online: nltk.download('wordnet'))"
    exit 0
fi

mkdir -p "$DEST"
# copies, not symlinks: NLTK's path check rejects files that resolve outside the corpus root
for f in "$WN_SRC"/*; do
    [ -f "$f" ] || continue
    target="$DEST/$(basename "$f")"
    [ -L "$target" ] && rm -f "$target"
    cmp -s "$f" "$target" || cp -f "$f" "$target"
done
# lexnames(5WN): table rows "NN<TAB>pos.name<TAB>description" -> "NN<TAB>pos.name<TAB>category",
# category 1 noun, 2 verb, 3 adjective, 4 adverb (the man page's encoding).
TMP="$DEST/.lexnames.$$"
zcat "$MAN_PAGE" | awk -F'\t' '
    /^[0-9][0-9]\t/ {
        name = $2; gsub(/[ \t]+/, "", name)
        split(name, parts, ".")
        cat = (parts[1] == "noun") ? 1 : (parts[1] == "verb") ? 2 : (parts[1] == "adj") ? 3 : (parts[1] == "adv") ? 4 : 0
        if (cat == 0) { exit 1 }
        printf "%s\t%s\t%d\n", $1, name, cat
    }' > "$TMP"
if [ "$(wc -l < "$TMP" 2>/dev/null || echo 0)" != "45" ]; then
    say "could not derive lexnames from $MAN_PAGE (expected 45 rows): METEOR will be reported as unavailable."
    rm -f "$TMP"
    exit 0
fi
mv -f "$TMP" "$DEST/lexnames"
for f in $NEEDED lexnames; do
    if [ ! -s "$DEST/$f" ]; then
        say "$DEST/$f is missing: METEOR will be reported as unavailable."
        exit 0
    fi
done
say "WordNet ready for NLTK at $DEST"
exit 0
