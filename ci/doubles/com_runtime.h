/* The generic part of the COM double (ci/doubles/gen_com_double.py writes the rest).

   The generated part holds, for every interface of providers/windows/_layouts.py, one C
   function per method with the metadata's exact signature and a vtable in the metadata's slot
   order; each function records its arguments through the helpers here and then either answers
   from the script (an HRESULT, out-parameters, structures filled member by member) or hands
   over to one of the few behaviours below that COM itself defines (QueryInterface, AddRef,
   Release, IEnumVdsObject::Next, IDispatch::GetIDsOfNames and Invoke). */
#ifndef COM_RUNTIME_H
#define COM_RUNTIME_H
#include <windows.h>
#include <oleauto.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct Obj Obj;

/* One interface pointer of an object: what a caller holds. */
typedef struct Face {
    const void *vtbl;
    Obj *obj;
    int iface;
} Face;

typedef struct IfaceInfo {
    const char *name;
    GUID iid;
    int base;           /* index of the base interface, -1 for IUnknown */
    const void *vtbl;
} IfaceInfo;

extern const IfaceInfo IFACES[];
extern const int NIFACES;

/* One call being recorded as a JSON line of $DOUBLE_LOG. */
typedef struct Call {
    FILE *f;
    Face *self;
    const char *iface;
    const char *method;
    int first;
    char extra[1024];
} Call;

void begin_call(Call *c, Face *self, const char *iface, const char *method);
void put_key(Call *c, const char *name);
void put_num(Call *c, unsigned long long v);
void put_ptr(Call *c, const void *p);
void put_bytes(Call *c, const void *p, size_t n);
void put_wstr(Call *c, const uint16_t *s);
void put_wstr_list(Call *c, uint16_t *const *names, unsigned n);
void put_dispparams(Call *c, const void *params);
void end_call(Call *c, long returned);

HRESULT scripted_hr(Call *c);
void out_object(Call *c, const char *key, void **out);
void out_number(Call *c, const char *key, void *out, int size);
void out_guid(Call *c, const char *key, GUID *out);
void out_wstr_alloc(Call *c, const char *key, uint16_t **out);
void out_wchars(Call *c, const char *key, uint16_t *out, size_t count);
void out_bytes(Call *c, const char *key, uint8_t *out, size_t count);

HRESULT do_QueryInterface(Call *c, Face *self, const GUID *riid, void **out);
ULONG do_AddRef(Call *c, Face *self);
ULONG do_Release(Call *c, Face *self);
HRESULT do_Next(Call *c, Face *self, uint32_t celt, void **objects, uint32_t *fetched);
HRESULT do_GetIDsOfNames(Call *c, Face *self, const GUID *riid, uint16_t *const *names,
                         uint32_t count, uint32_t lcid, int32_t *ids);
HRESULT do_Invoke(Call *c, Face *self, int32_t id, const GUID *riid, uint32_t lcid,
                  uint16_t flags, void *params, void *result, void *excepinfo, uint32_t *arg_err);
#endif
