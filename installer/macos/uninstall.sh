#!/bin/sh
# Removes everything imza-agent.pkg installed (run with sudo; the .pkg puts this script in
# /Library/Application Support/imza-agent/). macOS has no uninstaller for packages: this
# is the list of what the package wrote. Each user's own data
# (~/Library/Application Support/imza-agent: grants, journal) stays until they delete it.
set -u
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
for uid in $(ps -axo uid=,comm= | awk '/imza-agent/ {print $1}' | sort -u); do
    launchctl bootout "gui/$uid/az.imza.agent" 2>/dev/null || true
done
rm -f /Library/LaunchAgents/az.imza.agent.plist
for dir in "/Library/Google/Chrome/NativeMessagingHosts" \
           "/Library/Application Support/Chromium/NativeMessagingHosts" \
           "/Library/Microsoft/Edge/NativeMessagingHosts" \
           "/Library/Application Support/Mozilla/NativeMessagingHosts"; do
    rm -f "$dir/az.imza.agent.json"
done
rm -rf /Applications/imza-agent.app
rm -f /usr/local/bin/imza-agent
# The administrator's policy.toml, if any, is the administrator's: it stays.
rm -f "/Library/Application Support/imza-agent/uninstall.sh"
rmdir "/Library/Application Support/imza-agent" 2>/dev/null || true
pkgutil --forget az.imza.agent >/dev/null 2>&1 || true
echo "imza-agent removed"
