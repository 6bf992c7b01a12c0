# tailguard: rpm %pre. Creates the `tailguard` user before the files that
# it owns (/var/lib/tailguard) are installed. $1: 1 = install, 2 = upgrade.

#TAILGUARD_COMMON#

tg_create_user
exit 0
