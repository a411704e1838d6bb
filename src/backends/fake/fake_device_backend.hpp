#pragma once
// The fake device (`--device fake`): a backend whose memory is kept apart from the host, so
// that the device code paths of the variants run, and are tested, where no GPU exists.
//
// alloc() returns TensorRefs with on_device = true whose `data` is an address inside a range
// reserved with PROT_NONE: any host read or write through it faults. The values live in a
// side table (fp32 words, one per element); upload() rounds them to the tensor's dtype as the
// CUDA upload does, download() returns them. Every op translates its argument struct (each
// TensorRef, IndexBuffer, IndexLists and list pointer) to host scratch copies, runs the CPU
// backend's op on them and copies what the op writes back, so results are bit-identical to
// the CPU's. Arguments that are not memory of this device (host tensors, another backend's
// lists, freed buffers) make supports_*() answer Support::no with the field named, and the op
// itself throw. Allocations are filled with NaN, as device memory is not zeroed.
#include <memory>

#include "core/backend.hpp"

namespace ab {

std::unique_ptr<Backend> make_fake_device_backend();

}  // namespace ab
