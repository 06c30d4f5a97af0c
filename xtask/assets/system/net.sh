#!/bin/sh
# The guest's network, made at every boot before network-online.target (walk-net.service).
# No NIC: the default route goes over a veth pair to a client network namespace, so the
# interface knock guards by default (the default route's) is one the walk can knock on.
#
#   root namespace      kv0 198.51.100.1/24 2001:db8:1::1/64, default via the client
#   netns client        kc0 198.51.100.2/24 2001:db8:1::2/64, the knocker; it routes for
#                       kd0 203.0.113.1/24  2001:db8:2::1/64
#   netns stranger      kd1 203.0.113.2/24  2001:db8:2::2/64, who never knocks
set -eu
ip netns add client
ip netns add stranger
ip link add kv0 type veth peer name kc0 netns client
ip -n client link add kd0 type veth peer name kd1 netns stranger
ip addr add 198.51.100.1/24 dev kv0
ip addr add 2001:db8:1::1/64 dev kv0 nodad
ip link set kv0 up
ip route add default via 198.51.100.2 dev kv0
ip -6 route add default via 2001:db8:1::2 dev kv0
ip -n client addr add 198.51.100.2/24 dev kc0
ip -n client addr add 2001:db8:1::2/64 dev kc0 nodad
ip -n client addr add 203.0.113.1/24 dev kd0
ip -n client addr add 2001:db8:2::1/64 dev kd0 nodad
ip -n client link set lo up
ip -n client link set kc0 up
ip -n client link set kd0 up
ip netns exec client sh -c \
    "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"
ip -n stranger addr add 203.0.113.2/24 dev kd1
ip -n stranger addr add 2001:db8:2::2/64 dev kd1 nodad
ip -n stranger link set lo up
ip -n stranger link set kd1 up
ip -n stranger route add default via 203.0.113.1
ip -n stranger -6 route add default via 2001:db8:2::1
