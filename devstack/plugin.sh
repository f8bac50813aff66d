#!/bin/bash
# shellcheck shell=bash
# nova-lxd-py devstack plugin: nova-compute on system containers.
#
# devstack sources this file as `plugin.sh <mode> [<phase>]`:
#   stack pre-install   Debian packages, subordinate id ranges
#   stack install       the driver (and nova's loader shim), the runtime's unit
#   stack post-config   compute_driver and [lxd] in nova.conf, Glance formats
#   stack extra         busybox (and optionally Debian) images into Glance
#   stack test-config   tempest feature flags from the driver's support matrix
#   unstack             stop the runtime (and the containers it runs)
#   clean               remove the unit and the runtime's state
# Functions come from devstack (functions-common, inc/ini-config, inc/python):
# iniset, iniget, install_package, setup_develop, is_service_enabled,
# echo_summary, die. Variables from settings.

NOVA_LXD_PY_UNIT=nova-lxd-runtime.service
NOVA_LXD_PY_UNIT_PATH=${NOVA_LXD_PY_UNIT_PATH:-/etc/systemd/system/$NOVA_LXD_PY_UNIT}
NOVA_LXD_PY_DATA=${NOVA_LXD_PY_DATA:-${DATA_DIR:-/opt/stack/data}/nova-lxd-py}

function nova_lxd_py_python {
    # devstack's python (its venv when USE_VENV/GLOBAL_VENV is on)
    "${PYTHON:-python3}" "$@"
}

function nova_lxd_py_bin_dir {
    nova_lxd_py_python -c 'import os, sys; print(os.path.dirname(sys.executable))'
}

function pre_install_nova_lxd_py {
    # bindep.txt's default profile: what a compute host needs (no test tools).
    install_bindep "$NOVA_LXD_PY_DIR/bindep.txt" compute
    local f
    for f in /etc/subuid /etc/subgid; do
        if ! grep -q '^root:' "$f" 2>/dev/null; then
            echo "root:1000000:1000000000" | sudo tee -a "$f" >/dev/null
        fi
    done
}

function install_nova_lxd_py {
    setup_develop "$NOVA_LXD_PY_DIR"
    # nova loads drivers only from nova.virt.<name>: make sure the shim is
    # importable even when nova itself is a source checkout.
    if ! nova_lxd_py_python -c 'import nova.virt.lxd_py' 2>/dev/null; then
        local virt_dir
        virt_dir=$(nova_lxd_py_python -c 'import nova.virt, os; print(os.path.dirname(nova.virt.__file__))')
        sudo ln -sfn "$NOVA_LXD_PY_DIR/nova/virt/lxd_py" "$virt_dir/lxd_py"
    fi
    if [[ "$NOVA_LXD_USE_RUNTIME" == "True" ]]; then
        install_nova_lxd_runtime
    fi
}

function install_nova_lxd_runtime {
    local bin_dir
    bin_dir=$(nova_lxd_py_bin_dir)
    sed -e "s|@BIN_DIR@|$bin_dir|g" -e "s|@LXD_DIR@|$NOVA_LXD_RUNTIME_DIR|g" \
        -e "s|@GROUP@|$NOVA_LXD_RUNTIME_GROUP|g" \
        "$NOVA_LXD_PY_DIR/devstack/files/$NOVA_LXD_PY_UNIT" \
        | sudo tee "$NOVA_LXD_PY_UNIT_PATH" >/dev/null
    sudo systemctl daemon-reload
    sudo systemctl enable --now "$NOVA_LXD_PY_UNIT"
    local _ up=False
    for _ in $(seq 300); do
        if [[ -S "$NOVA_LXD_ENDPOINT" ]]; then
            up=True
            break
        fi
        sleep 0.1
    done
    if [[ "$up" != "True" ]]; then
        die $LINENO "nova-lxd-runtime did not create $NOVA_LXD_ENDPOINT (journalctl -u $NOVA_LXD_PY_UNIT)"
    fi
    if [[ "$NOVA_LXD_MULTINODE" == "True" ]]; then
        # Resize and cold migration: the destination runtime pulls from this one.
        sudo env LXD_DIR="$NOVA_LXD_RUNTIME_DIR" lxc config set core.https_address \
            "${HOST_IP:-127.0.0.1}:8443"
    fi
}

function configure_nova_lxd_py {
    local conf
    for conf in "$NOVA_CONF" "${NOVA_CPU_CONF:-}"; do
        [[ -n "$conf" && -f "$conf" ]] || continue
        iniset "$conf" DEFAULT compute_driver lxd_py.LXDDriver
        iniset "$conf" lxd endpoint "$NOVA_LXD_ENDPOINT"
        if [[ -n "$NOVA_LXD_POOL" ]]; then
            iniset "$conf" lxd pool "$NOVA_LXD_POOL"
        fi
    done
    if is_service_enabled g-api glance && [[ -n "${GLANCE_API_CONF:-}" ]]; then
        local formats
        formats=$(iniget "$GLANCE_API_CONF" image_format disk_formats)
        formats=${formats:-ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop}
        local format
        for format in ${NOVA_LXD_DISK_FORMATS//,/ }; do
            [[ ",$formats," == *",$format,"* ]] || formats="$formats,$format"
        done
        iniset "$GLANCE_API_CONF" image_format disk_formats "$formats"
    fi
}

function upload_nova_lxd_py_images {
    mkdir -p "$NOVA_LXD_PY_DATA"
    local busybox=$NOVA_LXD_PY_DATA/busybox.tar.xz
    if [[ ! -s "$busybox" ]]; then
        sudo "$NOVA_LXD_PY_DIR/tools/images/build-busybox" "$busybox"
    fi
    # A unified LXD tarball (metadata.yaml + rootfs/): disk format raw.
    openstack --os-cloud devstack-admin image create "$NOVA_LXD_IMAGE_NAME" \
        --public --disk-format raw --container-format bare \
        --property hw_architecture="$(uname -m)" --file "$busybox" -f value -c id \
        > "$NOVA_LXD_PY_DATA/busybox.id"
    if [[ -n "$NOVA_LXD_DEBIAN_MIRROR" ]] && command -v debootstrap >/dev/null; then
        local root=$NOVA_LXD_PY_DATA/debian-rootfs
        local tarball=$NOVA_LXD_PY_DATA/debian-$NOVA_LXD_DEBIAN_SUITE.tar.gz
        if [[ ! -s "$tarball" ]]; then
            sudo debootstrap --variant=minbase "$NOVA_LXD_DEBIAN_SUITE" "$root" \
                "$NOVA_LXD_DEBIAN_MIRROR"
            sudo tar -C "$root" -czf "$tarball" .
            sudo rm -rf "$root"
        fi
        # A bare root filesystem: root-tar (the driver writes metadata.yaml).
        openstack --os-cloud devstack-admin image create "debian-$NOVA_LXD_DEBIAN_SUITE-lxd" \
            --public --disk-format root-tar --container-format bare \
            --property hw_architecture="$(uname -m)" --file "$tarball"
    fi
}

function configure_tempest_nova_lxd_py {
    [[ -n "${TEMPEST_CONFIG:-}" ]] || return 0
    local name enabled
    while read -r name enabled; do
        iniset "$TEMPEST_CONFIG" compute-feature-enabled "$name" "$enabled"
    done < <(nova_lxd_py_python -m nova_lxd_py.support_matrix --tempest)
    if [[ "$NOVA_LXD_MULTINODE" != "True" ]]; then
        # one node: resize happens in place (devstack allows resize to the same
        # host), but a cold migration needs another host
        iniset "$TEMPEST_CONFIG" compute-feature-enabled cold_migration False
    fi
    # the serial console reaches users through nova's serial proxy (devstack's
    # n-sproxy service, which also sets [serial_console] enabled on the computes)
    if ! is_service_enabled n-sproxy; then
        iniset "$TEMPEST_CONFIG" compute-feature-enabled serial_console False
    fi
    # busybox has no sshd: tempest must not try to log in to servers.
    iniset "$TEMPEST_CONFIG" validation run_validation False
    if [[ -s "$NOVA_LXD_PY_DATA/busybox.id" ]]; then
        local image_id
        image_id=$(cat "$NOVA_LXD_PY_DATA/busybox.id")
        iniset "$TEMPEST_CONFIG" compute image_ref "$image_id"
        iniset "$TEMPEST_CONFIG" compute image_ref_alt "$image_id"
    fi
}

function stop_nova_lxd_runtime {
    [[ "$NOVA_LXD_USE_RUNTIME" == "True" ]] || return 0
    # The daemon leaves containers running by design; unstack stops them too.
    local lxcpath=$NOVA_LXD_RUNTIME_DIR/containers name
    if [[ -d "$lxcpath" ]]; then
        for name in $(sudo ls "$lxcpath"); do
            sudo lxc-stop -P "$lxcpath" -n "$name" -k || true
        done
    fi
    sudo systemctl stop "$NOVA_LXD_PY_UNIT" || true
}

function clean_nova_lxd_runtime {
    [[ "$NOVA_LXD_USE_RUNTIME" == "True" ]] || return 0
    sudo systemctl disable "$NOVA_LXD_PY_UNIT" || true
    sudo rm -f "$NOVA_LXD_PY_UNIT_PATH"
    sudo systemctl daemon-reload || true
    local target
    awk -v d="$NOVA_LXD_RUNTIME_DIR" '$2 == d || index($2, d "/") == 1 {print $2}' \
        /proc/mounts | sort -r | while read -r target; do
        sudo umount -l "$target" || true
    done
    sudo rm -rf "$NOVA_LXD_RUNTIME_DIR" "$NOVA_LXD_PY_DATA"
}

if is_service_enabled n-cpu nova; then
    case "$1" in
        stack)
            case "$2" in
                pre-install)
                    echo_summary "nova-lxd-py: Debian packages and id ranges"
                    pre_install_nova_lxd_py
                    ;;
                install)
                    echo_summary "nova-lxd-py: installing the driver and the runtime"
                    install_nova_lxd_py
                    ;;
                post-config)
                    echo_summary "nova-lxd-py: configuring nova and glance"
                    configure_nova_lxd_py
                    ;;
                extra)
                    if is_service_enabled g-api glance; then
                        echo_summary "nova-lxd-py: uploading container images"
                        upload_nova_lxd_py_images
                    fi
                    ;;
                test-config)
                    if is_service_enabled tempest; then
                        echo_summary "nova-lxd-py: tempest feature flags"
                        configure_tempest_nova_lxd_py
                    fi
                    ;;
            esac
            ;;
        unstack)
            stop_nova_lxd_runtime
            ;;
        clean)
            stop_nova_lxd_runtime
            clean_nova_lxd_runtime
            ;;
    esac
fi
