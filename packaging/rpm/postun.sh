# tailguard: rpm %postun. rpm has no purge: erasing the package is the
# equivalent of `dpkg --purge` and deletes /var/lib/tailguard and the
# `tailguard` user (modified configuration files are kept as .rpmsave).
# $1: 0 = erase, 1 = upgrade.

#TAILGUARD_COMMON#

if [ "${1:-0}" -eq 0 ]; then
    tg_forget_unit
    tg_purge_state
else
    tg_daemon_reload
fi
exit 0
