#!/usr/bin/env bash
# Builds tailguard's .deb and .rpm packages into target/packages/.
#
#     packaging/build.sh
#
# It installs cargo-deb and cargo-generate-rpm (cargo install --locked) when
# they are missing, builds the release binary, generates the man pages and
# shell completions with the hidden `tailguard generate` command, assembles
# the maintainer scripts, and runs both packagers with the metadata in
# Cargo.toml ([package.metadata.deb], [package.metadata.generate-rpm]).
#
# Environment:
#   TAILGUARD_PKG_VERSION  package version instead of Cargo.toml's (e.g.
#                          0.1.0+test2 for a test upgrade); the binary's own
#                          --version is unchanged.
#   TAILGUARD_PKG_REVISION Debian revision / rpm release (default 1).
#   CARGO_TARGET_DIR       honoured, as by cargo.
# See docs/packaging.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

log() { printf '== %s\n' "$*"; }

# Where cargo puts build output (cargo-deb maps target/release/ in its
# metadata to it). Generated files always go to target/packaging/, where
# the metadata of both packagers looks for them.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
gen="$root/target/packaging"
out="$root/target/packages"

need_tool() {
    local subcommand="$1" crate="$2"
    if ! cargo "$subcommand" --version >/dev/null 2>&1 \
        && ! cargo "$subcommand" --help >/dev/null 2>&1; then
        log "installing $crate"
        cargo install --locked "$crate"
    fi
}
need_tool deb cargo-deb
need_tool generate-rpm cargo-generate-rpm

log "cargo build --release"
cargo build --release --locked --bin tailguard
bin="$target_dir/release/tailguard"

log "man pages and completions -> target/packaging/"
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions" "$gen/debian" "$gen/rpm"
"$bin" generate man --out-dir "$gen/man"
gzip -9 -n -f "$gen"/man/*.1
"$bin" generate completions bash >"$gen/completions/tailguard.bash"
"$bin" generate completions zsh >"$gen/completions/_tailguard"
"$bin" generate completions fish >"$gen/completions/tailguard.fish"
# cargo-deb strips target/release/tailguard itself; the rpm takes this copy.
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded -o "$gen/tailguard" "$bin"
else
    cp "$bin" "$gen/tailguard"
fi

log "maintainer scripts -> target/packaging/{debian,rpm}/"
# Puts packaging/common.sh in place of the #TAILGUARD_COMMON# line.
assemble() {
    local template="$1" dest="$2"
    awk -v common="packaging/common.sh" '
        $0 == "#TAILGUARD_COMMON#" {
            while ((getline line < common) > 0) print line
            close(common)
            next
        }
        { print }
    ' "$template" >"$dest"
    chmod 0755 "$dest"
    sh -n "$dest"
}
for script in postinst prerm postrm; do
    assemble "packaging/debian/$script" "$gen/debian/$script"
done
for script in pre post preun postun; do
    assemble "packaging/rpm/$script.sh" "$gen/rpm/$script.sh"
done

version="${TAILGUARD_PKG_VERSION:-}"
revision="${TAILGUARD_PKG_REVISION:-1}"
mkdir -p "$out"

log "cargo deb"
deb_args=(--no-build --output "$out")
if [ -n "$version" ]; then
    deb_args+=(--deb-version "$version-$revision")
else
    deb_args+=(--deb-revision "$revision")
fi
cargo deb "${deb_args[@]}"

log "cargo generate-rpm"
rpm_args=(--output "$out/" --set-metadata "release = \"$revision\"")
if [ -n "$version" ]; then
    # rpm versions may not contain '-'; '+' and '~' are fine.
    rpm_args+=(--set-metadata "version = \"${version//-/_}\"")
fi
cargo generate-rpm "${rpm_args[@]}"

log "packages"
ls -l "$out"
