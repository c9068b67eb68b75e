// @NAME@: the static arena and @P@_init(), rendered by mcu-deploy from firmware/library/model_arena.cc. In a
// source of its own so a firmware that only calls @P@_init_with_arena() links no static arena (a static
// library's object is only pulled in when one of its symbols is used).
#include "@P@.h"

namespace {
alignas(16) unsigned char arena[@PU@_ARENA_SIZE];
}  // namespace

extern "C" @P@_status @P@_init(void) { return @P@_init_with_arena(arena, sizeof(arena)); }
