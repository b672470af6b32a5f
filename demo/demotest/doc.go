// Package demotest holds the desktop demo's end-to-end test: it builds
// the demo (package main in demo, which imports Ebitengine), runs it with
// -screenshot under a display (DISPLAY, or xvfb-run), and checks the
// picture and the output. The test package itself does not import
// Ebitengine, so it compiles and skips cleanly on a headless machine.
package demotest
