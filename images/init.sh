#!/bin/sh
# patchbay guest init: minbase has no init system. Start sshd as early as it
# can run (the harness waits on it), then finish setting up: sshd binds all
# addresses, so configuring the network after it starts loses nothing.
# -r: no re-exec of sshd for each connection, which costs ~0.2 s of a
# restored run's login under TCG (OpenSSH 9.2 still has the flag).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /run/sshd
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
/usr/sbin/sshd -e -r
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip link set lo up
ip route add default via 10.0.2.2
echo "patchbay-init: sshd started" > /dev/kmsg
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
hostname patchbay
# PID 1 must not exit; reap orphans.
while :; do wait; sleep 1; done
