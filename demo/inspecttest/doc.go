// Package inspecttest holds the end-to-end test of the server's
// Inspector (plugin.Server.Inspector) in a real headless Chromium, against
// the demo's world with bots connected. It writes docs/inspector.png when
// EBISYNC_UPDATE_SCREENSHOT=1.
package inspecttest
