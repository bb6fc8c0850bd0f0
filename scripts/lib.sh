# Shared by scripts/demo, scripts/test and .ci/run: find Go, and install the
# Debian packages a command needs when they are missing.

export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null 2>&1 || die "go not found on PATH (nor in /usr/local/go/bin): install Go 1.26 first"
}

# ensure_tools TOOL:PACKAGE... installs the Debian packages of the tools
# that are not on PATH. As root it runs apt-get; otherwise it says what to
# install and returns 1.
ensure_tools() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" -ne 0 ]; then
    printf '%s: missing Debian packages: %s (run as root, or: sudo apt-get install %s)\n' \
      "${0##*/}" "${missing[*]}" "${missing[*]}" >&2
    return 1
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  printf '%s: installing %s\n' "${0##*/}" "${missing[*]}" >&2
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

# ensure_resolved gives the split-DNS test systemd-resolved without
# installing it: the package's postinst would point /etc/resolv.conf at
# resolved's stub and change the machine's DNS. Unless resolved is
# installed, it downloads the Debian package of the installed systemd's
# version (apt-get download), unpacks it (dpkg-deb -x, no scripts run)
# under ~/.cache/cyphonic and exports CYPHONIC_RESOLVED_ROOT for the test.
ensure_resolved() {
  { [ -x /lib/systemd/systemd-resolved ] || [ -x /usr/lib/systemd/systemd-resolved ]; } && return 0
  local ver dir tmp
  ver=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null) || return 1
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/cyphonic/systemd-resolved_$ver
  if [ ! -x "$dir/lib/systemd/systemd-resolved" ]; then
    tmp=$(mktemp -d) && chmod 755 "$tmp" || return 1
    if ! (cd "$tmp" && apt-get download -qq "systemd-resolved=$ver" 2>/dev/null ||
          { apt-get update -qq && apt-get download -qq "systemd-resolved=$ver"; }) ||
       ! mkdir -p "$dir.part" || ! dpkg-deb -x "$tmp"/systemd-resolved_*.deb "$dir.part"; then
      rm -rf "$tmp" "$dir.part"
      printf '%s: could not fetch systemd-resolved %s for the split-DNS test\n' "${0##*/}" "$ver" >&2
      return 1
    fi
    rm -rf "$tmp" "$dir" && mv "$dir.part" "$dir"
  fi
  export CYPHONIC_RESOLVED_ROOT=$dir
}
