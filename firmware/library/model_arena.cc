// @NAME@: the static arena and @P@_init(), rendered by mcu-deploy from firmware/library/model_arena.cc. In a
// source of its own so a firmware that only calls @P@_init_with_arena() links no static arena (a static
// library's object is only pulled in when one of its symbols is used).
#include "@P@.h"

// Named tensor_arena, as in the harness: `invoke build --elf=` finds it in your firmware's image (mangled in this
// unnamed namespace, so two models' arenas do not clash) and does not count the arena twice.
namespace {
alignas(16) unsigned char tensor_arena[@PU@_ARENA_SIZE];
}  // namespace

extern "C" @P@_status @P@_init(void) { return @P@_init_with_arena(tensor_arena, sizeof(tensor_arena)); }
