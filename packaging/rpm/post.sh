# tailguard: rpm %post. Never starts or enables the service on a fresh
# install; an upgrade restarts it only if it was running.
# $1: 1 = install, 2 (or more) = upgrade.

#TAILGUARD_COMMON#

tg_create_dirs
tg_daemon_reload
if [ "${1:-1}" -ge 2 ]; then
    tg_try_restart
fi
exit 0
