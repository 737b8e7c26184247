/* Wine 8.0 has no bcryptprimitives.dll, which Rust-built Python extensions (the `cel` wheel)
   import ProcessPrng from. This shim is the one function, over RtlGenRandom. Part of the CI
   environment (ci/wine-backend.sh), not of the backend or its doubles. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
