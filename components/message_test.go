package components_test

import (
	"errors"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

type chatV1 struct {
	From donburi.Entity
	Text string
}

type chatV2 struct {
	From donburi.Entity
	Text []byte
}

func TestRegisterMessage(t *testing.T) {
	r := components.NewRegistry()
	chat := components.RegisterMessage[chatV1](r, "game.chat", &components.MessageOptions{FromClient: true})
	hit := components.RegisterMessage[struct{ Damage int32 }](r, "game.hit", nil)
	assert(t, chat.Index() == 0 && hit.Index() == 1 && chat.Type().Options().FromClient && !hit.Type().Options().FromClient, "indices or options wrong")
	fs := chat.Type().Fields()
	assert(t, len(fs) == 2 && fs[0].Type == "entity", "fields %+v", fs)
	got, ok := components.LookupMessage[chatV1](r, "game.chat")
	assert(t, ok && got == chat, "LookupMessage")
	_, ok = components.LookupMessage[chatV2](r, "game.chat")
	assert(t, !ok, "LookupMessage of the wrong type")
	// Messages have their own namespace: a component may share a name.
	components.Register(r, "game.chat", donburi.NewComponentType[chatV2](), nil)

	mustPanic(t, func() { components.RegisterMessage[chatV2](r, "game.chat", nil) }, `"game.chat"`, "already registered")
	mustPanic(t, func() { components.RegisterMessage[chatV1](r, "other", nil) }, "already registered as")
	mustPanic(t, func() { components.RegisterMessage[struct{ M map[int]int }](r, "bad", nil) }, `"bad"`, "M")
	r.Freeze()
	mustPanic(t, func() { components.RegisterMessage[struct{ X int }](r, "late", nil) }, "frozen")
}

func TestCheckMessages(t *testing.T) {
	a, b := components.NewRegistry(), components.NewRegistry()
	components.RegisterMessage[chatV1](a, "game.chat", nil)
	components.RegisterMessage[chatV2](b, "game.chat", nil)
	assert(t, a.Check(b.Schema()) == nil, "components differ")
	err := a.CheckMessages(b.MessageSchema(), "on the server", "on the client")
	var me *components.MismatchError
	assert(t, errors.As(err, &me) && me.Message && me.Component == "game.chat" && me.Field == "Text", "mismatch %v", err)
	assert(t, err.Error() == `schema mismatch: message "game.chat" field "Text": type string on the server but []byte on the client`, "error %q", err)

	c := components.NewRegistry()
	err = a.CheckMessages(c.MessageSchema(), "locally", "remotely")
	assert(t, err != nil && errors.As(err, &me) && me.Reason == "registered locally but not remotely", "missing: %v", err)
}
