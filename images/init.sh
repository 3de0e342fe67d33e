#!/bin/sh
# patchbay guest init: minbase has no init system. Mount the API file
# systems, bring up the user-mode network, start sshd, say so on the console.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
hostname patchbay
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
mkdir -p /run/sshd
/usr/sbin/sshd -e
echo "patchbay-init: sshd started" > /dev/kmsg
# PID 1 must not exit; reap orphans.
while :; do wait; sleep 1; done
