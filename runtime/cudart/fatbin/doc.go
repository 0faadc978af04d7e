// Package fatbin reads the fat binaries nvcc embeds in host objects: the
// wrapper a CUDA program passes to __cudaRegisterFatBinary, and the
// container of cubins and PTX it points to.
//
// # Usage
//
//	w, err := fatbin.ParseWrapper(wrapperBytes)    // {magic, version, data, extra}
//	n, err := fatbin.Size(first16BytesAtData)      // the container's length
//	c, err := fatbin.Parse(containerBytes)
//	for _, e := range c.Entries { fmt.Println(&e) } // "elf sm_90, 4392 bytes"
//
// The shim uploads a container as it is: the CUDA driver on the server
// picks the entry for its GPU and decompresses it, so this package never
// decompresses. docs/cuda-shim.md describes the layout, as seen in nvcc
// 13.0's output.
//
// # Layout (little endian)
//
// Wrapper (24 bytes): u32 magic 0x466243b1, u32 version (1, or 2 for a
// device-linked object), u64 address of the container, u64 file name (1)
// or prelinked fatbins (2).
//
// Container header (16 bytes): u32 magic 0xba55ed50, u16 version (1), u16
// header size (16), u64 size of the entries that follow.
//
// Entry header (64 bytes for ELF, 80 for PTX), then the payload:
//
//	 0 u16 kind (1 PTX, 2 ELF)     2 u16 version (0x0101)   4 u32 header size
//	 8 u64 padded payload size    16 u32 stored payload size (0: the padded size)
//	24 u16 minor, 26 u16 major (PTX ISA version of a PTX entry)
//	28 u32 SM architecture (90)   32 u32, u32 (zero)
//	40 u64 flags (0x1 64-bit, 0x2 debug, 0x10 Linux, 0x2000 LZ4, 0x8000 zstd)
//	48 u64 (zero)                 56 u64 uncompressed size (compressed entries)
//
// The next entry starts after the padded payload.
//
// # Concurrency
//
// The functions only read their arguments and are safe for concurrent
// use. Parse never panics on any input.
package fatbin
