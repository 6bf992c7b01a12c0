# tailguard: rpm %preun. Stops the service when the package is erased;
# an upgrade leaves it to %post. $1: 0 = erase, 1 = upgrade.

#TAILGUARD_COMMON#

if [ "${1:-0}" -eq 0 ]; then
    tg_stop
fi
exit 0
