#!/usr/bin/env bash
# The packaging check CI runs (from .ci/run): builds the .deb and .rpm with
# packaging/build.sh, installs, upgrades and purges the .deb on this
# machine, and inspects the .rpm. Prints a PASS or FAIL line per check and
# ends with "N passed, M failed"; exits non-zero when anything failed.
#
# Needs root (it runs dpkg and creates a system user). It installs the
# Debian packages it needs, is safe to rerun, and always leaves the machine
# as it found it: tailguard purged, no /etc/tailguard, no tailguard user.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export DEBIAN_FRONTEND=noninteractive

passed=0
failed=0
log_file="$(mktemp)"

pass() {
    echo "PASS: $1"
    passed=$((passed + 1))
}

fail() {
    echo "FAIL: $1"
    failed=$((failed + 1))
    if [ -s "$log_file" ]; then
        sed 's/^/    | /' "$log_file" | tail -n 40
    fi
}

# check DESCRIPTION COMMAND...: runs COMMAND, output kept for a failure.
check() {
    local what="$1"
    shift
    if "$@" >"$log_file" 2>&1; then
        pass "$what"
    else
        fail "$what"
    fi
    : >"$log_file"
}

finish() {
    echo "$passed passed, $failed failed"
    rm -f "$log_file"
    [ "$failed" -eq 0 ]
    exit
}

purge_tailguard() {
    if dpkg-query -W -f='${Status}' tailguard 2>/dev/null | grep -qv 'not-installed'; then
        dpkg --purge tailguard >/dev/null 2>&1 || true
    fi
}

cleanup() {
    purge_tailguard
    rm -rf /run/tailguard
    rm -f "$root"/target/packages/*"$upgrade_version"*
}

file_mode() { stat -c '%a' "$1"; }
file_owner() { stat -c '%U:%G' "$1"; }

echo "== packaging checks"
if [ "$(id -u)" -ne 0 ]; then
    fail "running as root (dpkg -i needs it)"
    finish
fi

# --- tools ---------------------------------------------------------------
missing=()
for pkg in dpkg-dev rpm systemd binutils passwd util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$log_file" 2>&1 || { fail "apt-get install ${missing[*]}"; finish; }
fi
: >"$log_file"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
upgrade_version="${version}+pkgtest2"
arch="$(dpkg --print-architecture)"
deb="target/packages/tailguard_${version}-1_${arch}.deb"
deb2="target/packages/tailguard_${upgrade_version}-1_${arch}.deb"
rpm_file="target/packages/tailguard-${version}-1.$(uname -m).rpm"

# Start from a clean machine even if an earlier run was interrupted.
purge_tailguard
trap cleanup EXIT
if [ -e /etc/tailguard ]; then
    echo "note: /etc/tailguard exists before the test (not created by it)"
fi

# --- build ---------------------------------------------------------------
if bash packaging/build.sh >"$log_file" 2>&1; then
    pass "packaging/build.sh builds both packages"
else
    fail "packaging/build.sh"
    finish
fi
: >"$log_file"
check "the .deb exists: $deb" test -s "$deb"
check "the .rpm exists: $rpm_file" test -s "$rpm_file"

# --- install -------------------------------------------------------------
if dpkg -i "$deb" >"$log_file" 2>&1 </dev/null; then
    pass "dpkg -i installs the .deb"
else
    fail "dpkg -i $deb"
    finish
fi
: >"$log_file"

passwd_entry="$(getent passwd tailguard || true)"
check "user tailguard exists" test -n "$passwd_entry"
check "tailguard's home is /var/lib/tailguard" \
    test "$(echo "$passwd_entry" | cut -d: -f6)" = /var/lib/tailguard
check "tailguard has no login shell" \
    bash -c '[[ "$1" == */nologin || "$1" == /bin/false ]]' _ "$(echo "$passwd_entry" | cut -d: -f7)"
groups_of_user="$(id -nG tailguard 2>/dev/null || true)"
check "tailguard is in group adm" grep -qw adm <<<"$groups_of_user"
check "tailguard is in group systemd-journal" grep -qw systemd-journal <<<"$groups_of_user"
check "tailguard's primary group is tailguard" test "$(id -ng tailguard 2>/dev/null)" = tailguard

check "/usr/bin/tailguard is executable" test -x /usr/bin/tailguard
check "tailguard version runs" /usr/bin/tailguard version
check "/var/lib/tailguard is tailguard:tailguard" test "$(file_owner /var/lib/tailguard)" = tailguard:tailguard
check "/var/lib/tailguard has mode 750" test "$(file_mode /var/lib/tailguard)" = 750
check "/etc/default/tailguard has mode 600" test "$(file_mode /etc/default/tailguard)" = 600
check "/etc/default/tailguard is owned by root" test "$(file_owner /etc/default/tailguard)" = root:root
check "/etc/tailguard/tailguard.toml is installed" test -f /etc/tailguard/tailguard.toml
check "/etc/tailguard/conf.d is an empty directory" \
    bash -c '[ -d /etc/tailguard/conf.d ] && [ -z "$(ls -A /etc/tailguard/conf.d)" ]'
conffiles="$(dpkg-query -W -f='${Conffiles}' tailguard)"
check "tailguard.toml is a conffile" grep -q ' /etc/tailguard/tailguard.toml ' <<<"$conffiles"
check "/etc/default/tailguard is a conffile" grep -q ' /etc/default/tailguard ' <<<"$conffiles"
unit=/lib/systemd/system/tailguard.service
check "the unit is installed in $unit" test -f "$unit"
for path in \
    /usr/share/man/man1/tailguard.1.gz \
    /usr/share/man/man1/tailguard-run.1.gz \
    /usr/share/bash-completion/completions/tailguard \
    /usr/share/zsh/vendor-completions/_tailguard \
    /usr/share/fish/vendor_completions.d/tailguard.fish \
    /usr/share/doc/tailguard/examples/tailguard.rules \
    /usr/share/doc/tailguard/examples/20-archive-to-file.toml \
    /usr/share/doc/tailguard/packaging.md; do
    check "installed: $path" test -s "$path"
done
check "the man page renders" bash -c 'zcat /usr/share/man/man1/tailguard.1.gz | grep -q "^.TH tailguard 1"'

check "tailguard validate --config-dir /etc/tailguard passes" \
    /usr/bin/tailguard validate --config-dir /etc/tailguard
check "tailguard validate passes as the tailguard user (as ExecStartPre runs it)" \
    runuser -u tailguard -- /usr/bin/tailguard validate
# A short run as the service would (user tailguard, packaged configuration,
# state in /var/lib/tailguard), stopped by SIGTERM: exit 0 is a clean drain.
# systemd's RuntimeDirectory= makes /run/tailguard (the exec socket's home);
# without systemd, make it the same way.
install -d -o tailguard -g tailguard -m 0750 /run/tailguard
check "tailguard run works as the tailguard user and stops cleanly on SIGTERM" \
    runuser -u tailguard -- timeout --preserve-status -s TERM 3 /usr/bin/tailguard run
for example in /usr/share/doc/tailguard/examples/*.toml; do
    name="$(basename "$example")"
    cp "$example" "/etc/tailguard/conf.d/$name"
    check "example drop-in $name validates" /usr/bin/tailguard validate --config-dir /etc/tailguard
    rm -f "/etc/tailguard/conf.d/$name"
done

man_opt=--man=yes
command -v man >/dev/null 2>&1 || man_opt=--man=no
verify_unit() {
    local out
    out="$(systemd-analyze verify "$man_opt" "$unit" 2>&1)"
    local rc=$?
    echo "$out"
    [ "$rc" -eq 0 ] && [ -z "$out" ]
}
check "systemd-analyze verify $unit is clean" verify_unit
for directive in Type=notify WatchdogSec=30s 'ExecStartPre=/usr/bin/tailguard validate' \
    User=tailguard NoNewPrivileges=yes ProtectSystem=strict TimeoutStopSec=45s \
    'EnvironmentFile=-/etc/default/tailguard'; do
    check "the unit sets $directive" grep -qx "$directive" "$unit"
done
check "install does not enable the service" \
    bash -c '! ls /etc/systemd/system/*.wants/tailguard.service 2>/dev/null | grep -q .'

control_dir="$(mktemp -d)"
dpkg-deb -e "$deb" "$control_dir"
for script in postinst prerm postrm; do
    check "deb $script is valid sh" sh -n "$control_dir/$script"
done
check "postinst guards systemctl with /run/systemd/system" \
    grep -q '\[ -d /run/systemd/system \]' "$control_dir/postinst"
rm -rf "$control_dir"

# --- upgrade keeps the admin's edits and the state -------------------------
echo '# edited by tests/packaging.sh' >>/etc/tailguard/tailguard.toml
echo 'TAILGUARD_LOG=debug' >>/etc/default/tailguard
echo 'checkpoint' >/var/lib/tailguard/test-state
if TAILGUARD_PKG_VERSION="$upgrade_version" bash packaging/build.sh >"$log_file" 2>&1; then
    pass "packaging/build.sh builds version $upgrade_version"
else
    fail "packaging/build.sh with TAILGUARD_PKG_VERSION=$upgrade_version"
fi
: >"$log_file"
check "dpkg -i upgrades to $upgrade_version" dpkg -i "$deb2" </dev/null
check "the upgraded version is installed" \
    test "$(dpkg-query -W -f='${Version}' tailguard)" = "${upgrade_version}-1"
check "the upgrade kept the edit to tailguard.toml" \
    grep -qx '# edited by tests/packaging.sh' /etc/tailguard/tailguard.toml
check "the upgrade kept the edit to /etc/default/tailguard" \
    grep -qx 'TAILGUARD_LOG=debug' /etc/default/tailguard
check "/etc/default/tailguard still has mode 600" test "$(file_mode /etc/default/tailguard)" = 600
check "the upgrade kept /var/lib/tailguard" test -f /var/lib/tailguard/test-state
check "the upgrade kept the user" getent passwd tailguard
check "the edited configuration still validates" \
    /usr/bin/tailguard validate --config-dir /etc/tailguard

# --- remove keeps configuration; purge removes everything ------------------
check "dpkg --remove succeeds" dpkg --remove tailguard
check "remove keeps tailguard.toml" test -f /etc/tailguard/tailguard.toml
check "remove keeps the user" getent passwd tailguard
check "remove deletes the binary" test ! -e /usr/bin/tailguard
check "dpkg --purge succeeds" dpkg --purge tailguard
check "purge removes /var/lib/tailguard" test ! -e /var/lib/tailguard
check "purge removes the user" bash -c '! getent passwd tailguard'
check "purge removes the group" bash -c '! getent group tailguard'
check "purge removes /etc/tailguard" test ! -e /etc/tailguard
check "purge removes /etc/default/tailguard" test ! -e /etc/default/tailguard
check "purge removes the unit" test ! -e "$unit"

# --- the .rpm has the same layout and scriptlets --------------------------
rpm_list="$(rpm -qpl "$rpm_file" 2>/dev/null)"
for path in \
    /usr/bin/tailguard \
    /usr/lib/systemd/system/tailguard.service \
    /etc/tailguard/tailguard.toml \
    /etc/default/tailguard \
    /usr/share/man/man1/tailguard.1.gz \
    /usr/share/bash-completion/completions/tailguard \
    /usr/share/zsh/site-functions/_tailguard \
    /usr/share/fish/vendor_completions.d/tailguard.fish \
    /usr/share/doc/tailguard/examples/tailguard.rules \
    /usr/share/doc/tailguard/examples/20-archive-to-file.toml; do
    check "rpm contains $path" grep -qx "$path" <<<"$rpm_list"
done
rpm_config="$(rpm -qpc "$rpm_file" 2>/dev/null)"
check "rpm marks tailguard.toml as config" grep -qx /etc/tailguard/tailguard.toml <<<"$rpm_config"
check "rpm marks /etc/default/tailguard as config" grep -qx /etc/default/tailguard <<<"$rpm_config"
rpm_dump="$(rpm -qp --dump "$rpm_file" 2>/dev/null)"
check "rpm installs /etc/default/tailguard with mode 600" \
    grep -q '^/etc/default/tailguard .* 0100600 ' <<<"$rpm_dump"
check "rpm config files are noreplace" \
    bash -c '[ "$(rpm -qp --qf "[%{FILENAMES} %{FILEFLAGS:fflags}\n]" "$1" | grep -c "^/etc/.* c.*n")" -eq 2 ]' _ "$rpm_file"
rpm_scripts="$(rpm -qp --scripts "$rpm_file" 2>/dev/null)"
for scriptlet in preinstall postinstall preuninstall postuninstall; do
    check "rpm has a $scriptlet scriptlet" grep -q "^$scriptlet scriptlet" <<<"$rpm_scripts"
done
check "rpm scriptlets create the user" grep -q 'useradd --system' <<<"$rpm_scripts"
check "rpm scriptlets add the journal group" grep -q 'systemd-journal' <<<"$rpm_scripts"
check "rpm scriptlets guard systemctl" grep -q '\[ -d /run/systemd/system \]' <<<"$rpm_scripts"
check "rpm scriptlets restart only a running service" grep -q 'try-restart' <<<"$rpm_scripts"
check "rpm requires useradd" bash -c 'rpm -qpR "$1" | grep -qx /usr/sbin/useradd' _ "$rpm_file"

# --- the machine is clean ----------------------------------------------------
purge_tailguard
check "machine is clean: no tailguard package" \
    bash -c '! dpkg-query -W -f="\${Status}" tailguard 2>/dev/null | grep -q "ok installed"'
check "machine is clean: no /etc/tailguard" test ! -e /etc/tailguard
check "machine is clean: no tailguard user" bash -c '! getent passwd tailguard'

finish
