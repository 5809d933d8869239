# Sourced by .ci/run: Debian's chromium, so that models/tests/report.rs renders the page of
# `genzoo report` headless (a screenshot that is not blank, the sections in its DOM, no console
# error). Installed from the package registry as root, or through sudo otherwise; the package
# lists are fetched only if the install does not find the package. REQUIRE_CHROMIUM=1 makes
# the test fail rather than skip its browser part if no browser can be run.
if ! chromium --version >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
    if ! "${APT[@]}" install chromium >/dev/null; then
        "${APT[@]}" update >/dev/null
        "${APT[@]}" install chromium >/dev/null
    fi
fi
echo "Chromium: $(chromium --version)"
export REQUIRE_CHROMIUM=1
