# Shared by the tailguard package's maintainer scripts (deb and rpm):
# packaging/build.sh puts this text in place of the #TAILGUARD_COMMON#
# line of each script, so every installed script stands alone. POSIX sh;
# every step tolerates hosts without systemd, adduser or a group.

TG_USER=tailguard
TG_HOME=/var/lib/tailguard

tg_warn() {
    echo "tailguard: warning: $*" >&2
}

tg_nologin() {
    for shell in /usr/sbin/nologin /sbin/nologin /bin/false; do
        if [ -x "$shell" ]; then
            echo "$shell"
            return
        fi
    done
    echo /bin/false
}

# The system user and group `tailguard`, with no login shell, home
# /var/lib/tailguard, and membership of adm and systemd-journal (to read
# logs and the journal); the groups are created when missing.
tg_create_user() {
    if ! getent group "$TG_USER" >/dev/null 2>&1; then
        groupadd --system "$TG_USER" 2>/dev/null \
            || addgroup --system "$TG_USER" >/dev/null 2>&1 \
            || tg_warn "cannot create group $TG_USER"
    fi
    if ! getent passwd "$TG_USER" >/dev/null 2>&1; then
        useradd --system --gid "$TG_USER" --home-dir "$TG_HOME" --no-create-home \
            --shell "$(tg_nologin)" --comment "tailguard agent" "$TG_USER" 2>/dev/null \
            || adduser --system --ingroup "$TG_USER" --home "$TG_HOME" --no-create-home \
                --shell "$(tg_nologin)" --gecos "tailguard agent" "$TG_USER" >/dev/null 2>&1 \
            || tg_warn "cannot create user $TG_USER"
    fi
    if getent passwd "$TG_USER" >/dev/null 2>&1; then
        # Keep an existing account consistent (an earlier version, or an
        # admin, may have created it differently).
        usermod --home "$TG_HOME" --shell "$(tg_nologin)" "$TG_USER" 2>/dev/null || true
    fi
    for group in adm systemd-journal; do
        if ! getent group "$group" >/dev/null 2>&1; then
            groupadd --system "$group" 2>/dev/null \
                || addgroup --system "$group" >/dev/null 2>&1 \
                || { tg_warn "group $group is missing and cannot be created; skipping it"; continue; }
        fi
        usermod --append --groups "$group" "$TG_USER" 2>/dev/null \
            || adduser "$TG_USER" "$group" >/dev/null 2>&1 \
            || tg_warn "cannot add $TG_USER to group $group"
    done
}

# /var/lib/tailguard (owner tailguard, mode 750), /etc/tailguard/conf.d,
# and the mode of /etc/default/tailguard, which may hold secrets.
tg_create_dirs() {
    mkdir -p "$TG_HOME"
    if getent passwd "$TG_USER" >/dev/null 2>&1; then
        chown "$TG_USER:$TG_USER" "$TG_HOME" || tg_warn "cannot chown $TG_HOME"
    fi
    chmod 0750 "$TG_HOME"
    # An administrator may have tightened these: only create them.
    [ -d /etc/tailguard ] || mkdir -m 0755 /etc/tailguard
    [ -d /etc/tailguard/conf.d ] || mkdir -m 0755 /etc/tailguard/conf.d
    if [ -f /etc/default/tailguard ]; then
        chown root:root /etc/default/tailguard
        chmod 0600 /etc/default/tailguard
    fi
}

tg_systemd_running() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

tg_daemon_reload() {
    if tg_systemd_running; then
        systemctl daemon-reload >/dev/null 2>&1 || tg_warn "systemctl daemon-reload failed"
    fi
}

# Restarts the service only if it is running: a fresh install never starts
# it, and an upgrade keeps a stopped service stopped.
tg_try_restart() {
    if tg_systemd_running; then
        systemctl try-restart tailguard.service >/dev/null 2>&1 \
            || tg_warn "restarting tailguard.service failed; see: journalctl -u tailguard"
    fi
}

tg_stop() {
    if tg_systemd_running; then
        systemctl stop tailguard.service >/dev/null 2>&1 || true
    fi
}

# Forgets the enablement (the unit file itself is gone by now).
tg_forget_unit() {
    rm -f /etc/systemd/system/multi-user.target.wants/tailguard.service
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge tailguard.service >/dev/null 2>&1 || true
    fi
    tg_daemon_reload
}

# Removes the state directory, the user, and its group.
tg_purge_state() {
    rm -rf "$TG_HOME"
    rmdir /etc/tailguard/conf.d 2>/dev/null || true
    rmdir /etc/tailguard 2>/dev/null || true
    if getent passwd "$TG_USER" >/dev/null 2>&1; then
        userdel "$TG_USER" 2>/dev/null \
            || deluser --system "$TG_USER" >/dev/null 2>&1 \
            || tg_warn "cannot remove user $TG_USER"
    fi
    if getent group "$TG_USER" >/dev/null 2>&1; then
        groupdel "$TG_USER" 2>/dev/null || true
    fi
}
