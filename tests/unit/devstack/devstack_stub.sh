# shellcheck shell=bash
# Stand-ins for the devstack functions plugin.sh uses. Actions a real devstack
# would take on the host (packages, sudo, systemctl, openstack) are recorded
# in $STUB_LOG instead; `sudo tee FILE` writes FILE under $STUB_ROOT so the
# test can read what would have been installed.
function iniset { "$STUB_PYTHON" "$STUB_DIR/ini.py" set "$@"; }
function iniget { "$STUB_PYTHON" "$STUB_DIR/ini.py" get "$@"; }
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$service,"* ]] && return 0
    done
    return 1
}
function install_package { echo "install_package $*" >> "$STUB_LOG"; }
# devstack's install_bindep installs bindep and the packages it reports missing;
# the stub records the request and what bindep would select.
function install_bindep {
    echo "install_bindep $*" >> "$STUB_LOG"
    local pkgs
    mapfile -t pkgs < <("$STUB_PYTHON" "$STUB_DIR/../../../tools/bindep-list" "$@")
    install_package "${pkgs[@]}"
}
function setup_develop { echo "setup_develop $*" >> "$STUB_LOG"; }
function echo_summary { echo "summary $*" >> "$STUB_LOG"; }
function die { echo "die $*" >> "$STUB_LOG"; return 1; }
function openstack {
    echo "openstack $*" >> "$STUB_LOG"
    echo 0f0e0d0c-0b0a-4909-8807-060504030201
}
function sudo {
    echo "sudo $*" >> "$STUB_LOG"
    if [[ "$1" == tee ]]; then
        mkdir -p "$STUB_ROOT$(dirname "$2")"
        cat > "$STUB_ROOT$2"
    fi
}
