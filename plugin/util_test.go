package plugin_test

import "unsafe"

func unsafePtr[T any](v *T) unsafe.Pointer { return unsafe.Pointer(v) }
