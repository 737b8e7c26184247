/* The generic runtime of the COM double: the scripted world of objects, the recording of each
   call as a JSON line of $DOUBLE_LOG, activation (DllGetClassObject, IClassFactory), and the
   behaviours COM defines for every object (QueryInterface, AddRef/Release, IEnumVdsObject::Next,
   IDispatch by member name). Nothing here knows VDS or Virtual PC: what each object is and
   answers comes from the script named by $DOUBLE_COM_SCRIPT, one `object<TAB>key<TAB>value` per
   line (keys and values may hold spaces):

     loader   clsid        9c38ed61-d565-4728-aeee-c80952f0ecde   (what DllGetClassObject serves)
     loader   interfaces   IVdsServiceLoader                      (what QueryInterface answers;
                                                                   the first is what is handed out)
     loader   IVdsServiceLoader::LoadService.ppService  @service  (an out-parameter)
     adapter  GetProperties.pInitiatorAdapterProp.id    {guid}    (a structure's member)
     adapter  LogoutFromTarget                          0x80042405  (an HRESULT)
     app      .FindVirtualMachine(s:XP Mode)            @vm       (IDispatch: a member's result)

   Values: `@name` an object, `+name` a new copy of an object (its `{new}` values become fresh
   GUIDs), `[a,b]` a new IEnumVdsObject over objects, numbers, GUIDs and text as the member's type
   wants. IDispatch results: `s:text`, `i:n`, `b:0|1`, `@name`, empty for VT_EMPTY, `!hr` for an
   exception carrying hr in EXCEPINFO.scode, `!!hr` for Invoke itself failing with hr. A property
   put stores its value for the next get; a method `SetX(a.., v)` stores v for `GetX(a..)`.
   The double only serves tests of the backend's marshalling; it is never a conformance target. */
#include "com_runtime.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct Prop {
    char *key;
    char *value;
} Prop;

typedef struct World World;

#define MAX_FACES 8

struct Obj {
    char name[96];
    World *world;
    LONG refs;
    int nfaces;
    Face faces[MAX_FACES];
    Prop *props;
    int nprops, cap;
    Obj **items;        /* an enumerator's objects */
    int nitems, pos;
    int has_clsid;
    GUID clsid;
};

struct World {
    Obj **objs;
    int n, cap;
    unsigned serial;
};

static World *world;

/* --------------------------------------------------------------------- environment, text */

static const char *env(const char *name, char *value, DWORD size)
{
    DWORD n = GetEnvironmentVariableA(name, value, size);
    return n && n < size ? value : NULL;
}

static char *dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    memcpy(out, s, n);
    return out;
}

static int iface_index(const char *name)
{
    for (int i = 0; i < NIFACES; i++)
        if (!strcmp(IFACES[i].name, name)) return i;
    return -1;
}

/* Does interface i derive from (or equal) the interface with this IID? */
static int implements(int i, const GUID *iid)
{
    for (; i >= 0; i = IFACES[i].base)
        if (IsEqualGUID(&IFACES[i].iid, iid)) return 1;
    return 0;
}

static int parse_guid(const char *text, GUID *g)
{
    unsigned d1, d2, d3, b[8];
    if (*text == '{') text++;
    if (sscanf(text, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &d1, &d2, &d3, &b[0], &b[1], &b[2],
               &b[3], &b[4], &b[5], &b[6], &b[7]) != 11)
        return 0;
    g->Data1 = d1;
    g->Data2 = (unsigned short)d2;
    g->Data3 = (unsigned short)d3;
    for (int i = 0; i < 8; i++) g->Data4[i] = (unsigned char)b[i];
    return 1;
}

/* ------------------------------------------------------------------------------ the world */

static Obj *find(World *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->objs[i]->name, name)) return w->objs[i];
    return NULL;
}

static Obj *new_obj(World *w, const char *name)
{
    Obj *o = calloc(1, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->world = w;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        w->objs = realloc(w->objs, w->cap * sizeof *w->objs);
    }
    w->objs[w->n++] = o;
    return o;
}

static Obj *obj_named(World *w, const char *name)
{
    Obj *o = find(w, name);
    return o ? o : new_obj(w, name);
}

static void add_face(Obj *o, const char *iface)
{
    int i = iface_index(iface);
    if (i < 0 || o->nfaces == MAX_FACES) {
        fprintf(stderr, "comdouble: %s: no interface %s in the layouts\n", o->name, iface);
        return;
    }
    o->faces[o->nfaces].vtbl = IFACES[i].vtbl;
    o->faces[o->nfaces].obj = o;
    o->faces[o->nfaces].iface = i;
    o->nfaces++;
}

static const char *get(Obj *o, const char *key)
{
    for (int i = o->nprops - 1; i >= 0; i--)
        if (!strcmp(o->props[i].key, key)) return o->props[i].value;
    return NULL;
}

static void set(Obj *o, const char *key, const char *value)
{
    for (int i = 0; i < o->nprops; i++)
        if (!strcmp(o->props[i].key, key)) {
            free(o->props[i].value);
            o->props[i].value = dup(value);
            return;
        }
    if (o->nprops == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 16;
        o->props = realloc(o->props, o->cap * sizeof *o->props);
    }
    o->props[o->nprops].key = dup(key);
    o->props[o->nprops].value = dup(value);
    o->nprops++;
}

static World *load_world(void)
{
    char path[1024], line[4096];
    World *w = calloc(1, sizeof *w);
    FILE *f = env("DOUBLE_COM_SCRIPT", path, sizeof path) ? fopen(path, "rb") : NULL;
    if (!f) return w;
    while (fgets(line, sizeof line, f)) {
        char *name, *key, *value;
        line[strcspn(line, "\r\n")] = 0;
        name = line;
        if (!*name || *name == '#') continue;
        key = name + strcspn(name, "\t");
        if (*key) *key++ = 0;
        value = key + strcspn(key, "\t");
        if (*value) *value++ = 0;
        Obj *o = obj_named(w, name);
        if (!strcmp(key, "interfaces")) {
            for (char *t = strtok(value, " \t"); t; t = strtok(NULL, " \t")) add_face(o, t);
        } else if (!strcmp(key, "clsid")) {
            o->has_clsid = parse_guid(value, &o->clsid);
        } else if (*key) {
            set(o, key, value);
        }
    }
    fclose(f);
    return w;
}

static Obj *clone(Obj *tmpl)
{
    World *w = tmpl->world;
    char name[128];
    snprintf(name, sizeof name, "%s.%u", tmpl->name, ++w->serial);
    Obj *o = new_obj(w, name);
    for (int i = 0; i < tmpl->nfaces; i++) add_face(o, IFACES[tmpl->faces[i].iface].name);
    for (int i = 0; i < tmpl->nprops; i++) {
        char fresh[64];
        const char *value = tmpl->props[i].value;
        if (!strcmp(value, "{new}")) {
            snprintf(fresh, sizeof fresh, "d0b1e000-0000-4000-8000-%012x", w->serial);
            value = fresh;
        }
        set(o, tmpl->props[i].key, value);
    }
    return o;
}

/* `@name`, `+name` or `[a,b]` -> the object it names (a copy, an enumerator), or NULL. */
static Obj *resolve(World *w, const char *value)
{
    if (*value == '@') return find(w, value + 1);
    if (*value == '+') {
        Obj *tmpl = find(w, value + 1);
        return tmpl ? clone(tmpl) : NULL;
    }
    if (*value == '[') {
        char list[2048], name[64];
        snprintf(list, sizeof list, "%s", value + 1);
        list[strcspn(list, "]")] = 0;
        snprintf(name, sizeof name, "enum.%u", ++w->serial);
        Obj *e = new_obj(w, name);
        add_face(e, "IEnumVdsObject");
        for (char *t = strtok(list, ", "); t; t = strtok(NULL, ", ")) {
            Obj *item = *t == '+' || *t == '@' ? resolve(w, t) : find(w, t);
            if (!item) continue;
            e->items = realloc(e->items, (e->nitems + 1) * sizeof *e->items);
            e->items[e->nitems++] = item;
        }
        return e;
    }
    return NULL;
}

static void *hand_out(Obj *o, int face)
{
    if (!o || face < 0 || face >= o->nfaces) return NULL;
    InterlockedIncrement(&o->refs);
    return &o->faces[face];
}

/* ------------------------------------------------------------------------------ recording */

void begin_call(Call *c, Face *self, const char *iface, const char *method)
{
    char path[1024];
    memset(c, 0, sizeof *c);
    c->self = self;
    c->iface = iface;
    c->method = method;
    c->f = env("DOUBLE_LOG", path, sizeof path) ? fopen(path, "ab") : NULL;
    if (c->f)
        fprintf(c->f, "{\"fn\":\"%s::%s\",\"double\":\"com\",\"iface\":\"%s\",\"this\":\"%s\","
                "\"args\":{", iface, method, IFACES[self->iface].name, self->obj->name);
}

void put_key(Call *c, const char *name)
{
    if (!c->f) return;
    fprintf(c->f, "%s\"%s\":", c->first ? "," : "", name);
    c->first = 1;
}

static void hex(FILE *f, const void *data, size_t n)
{
    const unsigned char *p = data;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
    fputc('"', f);
}

void put_num(Call *c, unsigned long long v) { if (c->f) fprintf(c->f, "%llu", v); }

void put_ptr(Call *c, const void *p) { if (c->f) fputs(p ? "\"ptr\"" : "null", c->f); }

void put_bytes(Call *c, const void *p, size_t n)
{
    if (!c->f) return;
    if (!p) fputs("null", c->f);
    else hex(c->f, p, n);
}

void put_wstr(Call *c, const uint16_t *s)
{
    size_t n = 0;
    if (!c->f) return;
    if (!s) { fputs("null", c->f); return; }
    while (s[n]) n++;
    hex(c->f, s, 2 * n);
}

void put_wstr_list(Call *c, uint16_t *const *names, unsigned n)
{
    if (!c->f) return;
    if (!names) { fputs("null", c->f); return; }
    fputc('[', c->f);
    for (unsigned i = 0; i < n; i++) {
        size_t k = 0;
        if (i) fputc(',', c->f);
        if (!names[i]) { fputs("null", c->f); continue; }
        while (names[i][k]) k++;
        hex(c->f, names[i], 2 * k);
    }
    fputc(']', c->f);
}

/* DISPPARAMS byte for byte, each VARIANT it points at byte for byte (a BSTR's text and the
   length prefix it carries beside it), and the named arguments' DISPIDs. */
void put_dispparams(Call *c, const void *params)
{
    const DISPPARAMS *dp = params;
    FILE *f = c->f;
    if (!f) return;
    if (!dp) { fputs("null", f); return; }
    fputs("{\"bytes\":", f);
    hex(f, dp, sizeof *dp);
    fputs(",\"args\":", f);
    if (!dp->rgvarg) fputs("null", f);
    else {
        fputc('[', f);
        for (UINT i = 0; i < dp->cArgs && i < 64; i++) {
            const VARIANT *v = &dp->rgvarg[i];
            fprintf(f, "%s{\"variant\":", i ? "," : "");
            hex(f, v, sizeof *v);
            if (V_VT(v) == VT_BSTR && V_BSTR(v)) {
                size_t k = 0;
                while (V_BSTR(v)[k]) k++;
                fputs(",\"bstr\":", f);
                hex(f, V_BSTR(v), 2 * k);
                fprintf(f, ",\"bstr_prefix\":%u", (unsigned)((const uint32_t *)V_BSTR(v))[-1]);
            }
            fputc('}', f);
        }
        fputc(']', f);
    }
    fputs(",\"named\":", f);
    if (!dp->rgdispidNamedArgs) fputs("null", f);
    else {
        fputc('[', f);
        for (UINT i = 0; i < dp->cNamedArgs && i < 64; i++)
            fprintf(f, "%s%ld", i ? "," : "", (long)dp->rgdispidNamedArgs[i]);
        fputc(']', f);
    }
    fputc('}', f);
}

static void extra(Call *c, const char *format, ...)
{
    va_list args;
    size_t n = strlen(c->extra);
    va_start(args, format);
    vsnprintf(c->extra + n, sizeof c->extra - n, format, args);
    va_end(args);
}

void end_call(Call *c, long returned)
{
    if (!c->f) return;
    fprintf(c->f, "},\"returned\":%ld%s}\n", returned, c->extra);
    fclose(c->f);
    c->f = NULL;
}

/* ------------------------------------------------------------------------- scripted answers */

/* The script's value for "Iface::Method.suffix", else "Method.suffix", on the called object. */
static const char *lookup(Call *c, const char *suffix)
{
    char key[512];
    const char *dot = *suffix ? "." : "";
    const char *found;
    snprintf(key, sizeof key, "%s::%s%s%s", c->iface, c->method, dot, suffix);
    found = get(c->self->obj, key);
    if (found) return found;
    snprintf(key, sizeof key, "%s%s%s", c->method, dot, suffix);
    return get(c->self->obj, key);
}

HRESULT scripted_hr(Call *c)
{
    const char *v = lookup(c, "");
    return v ? (HRESULT)strtoul(v, NULL, 0) : S_OK;
}

void out_object(Call *c, const char *key, void **out)
{
    const char *v = lookup(c, key);
    if (!out || !v) return;
    *out = hand_out(resolve(c->self->obj->world, v), 0);
}

void out_number(Call *c, const char *key, void *out, int size)
{
    const char *v = lookup(c, key);
    long long n;
    if (!v || !out) return;
    n = strtoll(v, NULL, 0);
    memcpy(out, &n, size);
}

void out_guid(Call *c, const char *key, GUID *out)
{
    const char *v = lookup(c, key);
    if (v && out) parse_guid(v, out);
}

void out_wstr_alloc(Call *c, const char *key, uint16_t **out)
{
    const char *v = lookup(c, key);
    int n;
    if (!v || !out) return;
    n = MultiByteToWideChar(CP_UTF8, 0, v, -1, NULL, 0);
    *out = CoTaskMemAlloc(2 * n);
    MultiByteToWideChar(CP_UTF8, 0, v, -1, (WCHAR *)*out, n);
}

void out_wchars(Call *c, const char *key, uint16_t *out, size_t count)
{
    const char *v = lookup(c, key);
    if (!v || !out || !count) return;
    if (!MultiByteToWideChar(CP_UTF8, 0, v, -1, (WCHAR *)out, (int)count)) out[count - 1] = 0;
}

void out_bytes(Call *c, const char *key, uint8_t *out, size_t count)
{
    const char *v = lookup(c, key);
    unsigned byte;
    if (!v || !out) return;
    for (size_t i = 0; i < count && sscanf(v + 2 * i, "%2x", &byte) == 1; i++) out[i] = byte;
}

/* ---------------------------------------------------------------------- what COM defines */

static HRESULT query(Obj *o, const GUID *riid, void **out)
{
    if (!out) return E_POINTER;
    *out = NULL;
    if (!riid) return E_INVALIDARG;
    if (IsEqualGUID(riid, &IID_IUnknown)) { *out = hand_out(o, 0); return *out ? S_OK : E_NOINTERFACE; }
    for (int i = 0; i < o->nfaces; i++)
        if (implements(o->faces[i].iface, riid)) { *out = hand_out(o, i); return S_OK; }
    return E_NOINTERFACE;
}

HRESULT do_QueryInterface(Call *c, Face *self, const GUID *riid, void **out)
{
    HRESULT hr = query(self->obj, riid, out);
    if (hr == S_OK) extra(c, ",\"gave\":\"%s\"", IFACES[((Face *)*out)->iface].name);
    return hr;
}

ULONG do_AddRef(Call *c, Face *self)
{
    LONG refs = InterlockedIncrement(&self->obj->refs);
    extra(c, ",\"refs\":%ld", (long)refs);
    return (ULONG)refs;
}

ULONG do_Release(Call *c, Face *self)
{
    LONG refs = InterlockedDecrement(&self->obj->refs);
    extra(c, ",\"refs\":%ld", (long)refs);
    if (refs < 0) extra(c, ",\"underflow\":true");
    return (ULONG)(refs < 0 ? 0 : refs);
}

HRESULT do_Next(Call *c, Face *self, uint32_t celt, void **objects, uint32_t *fetched)
{
    Obj *e = self->obj;
    uint32_t n = 0;
    HRESULT hr = scripted_hr(c);
    if (FAILED(hr)) return hr;
    if (!objects) return E_POINTER;
    while (n < celt && e->pos < e->nitems) objects[n++] = hand_out(e->items[e->pos++], 0);
    if (fetched) *fetched = n;
    return n == celt ? S_OK : S_FALSE;
}

/* IDispatch: member names are interned once; a DISPID is 1000 + the name's index. */
static char *names[1024];
static int nnames;

static int intern(const char *name)
{
    for (int i = 0; i < nnames; i++)
        if (!strcmp(names[i], name)) return i;
    if (nnames == 1024) return -1;
    names[nnames] = dup(name);
    return nnames++;
}

static int has_member(Obj *o, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < o->nprops; i++) {
        const char *k = o->props[i].key;
        if (k[0] == '.' && !strncmp(k + 1, name, n) && (k[n + 1] == 0 || k[n + 1] == '('))
            return 1;
    }
    return 0;
}

static void narrow(const WCHAR *s, char *out, size_t size)
{
    if (!WideCharToMultiByte(CP_UTF8, 0, s ? s : L"", -1, out, (int)size, NULL, NULL))
        out[0] = 0;
}

HRESULT do_GetIDsOfNames(Call *c, Face *self, const GUID *riid, uint16_t *const *member_names,
                         uint32_t count, uint32_t lcid, int32_t *ids)
{
    HRESULT hr = S_OK;
    (void)riid; (void)lcid;
    if (!member_names || !ids) return E_POINTER;
    for (uint32_t i = 0; i < count; i++) {
        char name[256];
        narrow((const WCHAR *)member_names[i], name, sizeof name);
        if (i == 0 && has_member(self->obj, name)) {
            int index = intern(name);
            ids[i] = index < 0 ? DISPID_UNKNOWN : 1000 + index;
            extra(c, ",\"member\":\"%s\",\"dispid\":%ld", name, (long)ids[i]);
        } else {
            ids[i] = DISPID_UNKNOWN;
            hr = DISP_E_UNKNOWNNAME;
        }
    }
    return hr;
}

static void render(const VARIANT *v, char *out, size_t size)
{
    switch (V_VT(v)) {
    case VT_BSTR: {
        char text[1024];
        narrow(V_BSTR(v), text, sizeof text);
        snprintf(out, size, "s:%s", text);
        break;
    }
    case VT_I4: snprintf(out, size, "i:%ld", (long)V_I4(v)); break;
    case VT_BOOL: snprintf(out, size, "b:%d", V_BOOL(v) != 0); break;
    case VT_EMPTY: out[0] = 0; break;
    default: snprintf(out, size, "vt%u:?", (unsigned)V_VT(v));
    }
}

/* A scripted IDispatch result into the result VARIANT, or the failure it names. */
static HRESULT answer(Obj *o, const char *value, VARIANT *result, EXCEPINFO *ei)
{
    if (value[0] == '!' && value[1] == '!') return (HRESULT)strtoul(value + 2, NULL, 0);
    if (value[0] == '!') {
        if (ei) {
            memset(ei, 0, sizeof *ei);
            ei->bstrSource = SysAllocString(L"conformance COM double");
            ei->bstrDescription = SysAllocString(L"scripted failure");
            ei->scode = (SCODE)strtoul(value + 1, NULL, 0);
        }
        return DISP_E_EXCEPTION;
    }
    if (!result) return S_OK;
    VariantInit(result);
    if (!strncmp(value, "s:", 2)) {
        int n = MultiByteToWideChar(CP_UTF8, 0, value + 2, -1, NULL, 0);
        WCHAR *text = malloc(2 * n);
        MultiByteToWideChar(CP_UTF8, 0, value + 2, -1, text, n);
        V_VT(result) = VT_BSTR;
        V_BSTR(result) = SysAllocString(text);
        free(text);
    } else if (!strncmp(value, "i:", 2)) {
        V_VT(result) = VT_I4;
        V_I4(result) = strtol(value + 2, NULL, 0);
    } else if (!strncmp(value, "b:", 2)) {
        V_VT(result) = VT_BOOL;
        V_BOOL(result) = atoi(value + 2) ? VARIANT_TRUE : VARIANT_FALSE;
    } else if (*value == '@' || *value == '+') {
        Obj *target = resolve(o->world, value);
        int face = -1;
        for (int i = 0; target && i < target->nfaces; i++)
            if (implements(target->faces[i].iface, &IID_IDispatch)) { face = i; break; }
        V_VT(result) = VT_DISPATCH;
        V_DISPATCH(result) = hand_out(target, face);
    }
    return S_OK;
}

HRESULT do_Invoke(Call *c, Face *self, int32_t id, const GUID *riid, uint32_t lcid,
                  uint16_t flags, void *params, void *result, void *excepinfo, uint32_t *arg_err)
{
    DISPPARAMS *dp = params;
    Obj *o = self->obj;
    const char *name, *value;
    char key[2048], args[1536] = "", text[1024];
    UINT positional;
    (void)riid; (void)lcid; (void)arg_err;
    if (id < 1000 || id >= 1000 + nnames) return DISP_E_MEMBERNOTFOUND;
    name = names[id - 1000];
    extra(c, ",\"member\":\"%s\"", name);
    if (!dp || (dp->cArgs && !dp->rgvarg)) return E_INVALIDARG;
    if (flags & DISPATCH_PROPERTYPUT) {
        if (dp->cArgs != 1 || dp->cNamedArgs != 1 || !dp->rgdispidNamedArgs
                || dp->rgdispidNamedArgs[0] != DISPID_PROPERTYPUT)
            return DISP_E_PARAMNOTOPTIONAL;
        snprintf(key, sizeof key, ".%s.put", name);
        value = get(o, key);
        if (value && value[0] == '!') return answer(o, value, NULL, excepinfo);
        render(&dp->rgvarg[0], text, sizeof text);
        snprintf(key, sizeof key, ".%s", name);
        set(o, key, text);
        return S_OK;
    }
    if (dp->cNamedArgs) return DISP_E_NONAMEDARGS;
    positional = dp->cArgs;
    for (UINT i = 0; i < positional; i++) {  /* rgvarg holds the arguments last first */
        render(&dp->rgvarg[positional - 1 - i], text, sizeof text);
        snprintf(args + strlen(args), sizeof args - strlen(args), "%s%s", i ? "," : "", text);
    }
    snprintf(key, sizeof key, ".%s(%s)", name, args);
    value = get(o, key);
    if (!value) {
        snprintf(key, sizeof key, ".%s", name);
        value = get(o, key);
    }
    if ((flags & DISPATCH_METHOD) && !strncmp(name, "Set", 3) && positional
            && !(value && value[0] == '!')) {
        char *last = strrchr(args, ',');
        render(&dp->rgvarg[0], text, sizeof text);
        if (last) *last = 0; else args[0] = 0;
        snprintf(key, sizeof key, ".Get%s(%s)", name + 3, args);
        set(o, key, text);
        return S_OK;
    }
    if (!value) return DISP_E_MEMBERNOTFOUND;
    return answer(o, value, result, excepinfo);
}

/* ------------------------------------------------------------------------------ activation */

typedef struct Factory {
    const IClassFactoryVtbl *vtbl;
    LONG refs;
    Obj *root;
} Factory;

static HRESULT STDMETHODCALLTYPE factory_query(IClassFactory *self, REFIID riid, void **out)
{
    if (!out) return E_POINTER;
    if (IsEqualGUID(riid, &IID_IUnknown) || IsEqualGUID(riid, &IID_IClassFactory)) {
        *out = self;
        self->lpVtbl->AddRef(self);
        return S_OK;
    }
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE factory_addref(IClassFactory *self)
{
    return InterlockedIncrement(&((Factory *)self)->refs);
}

static ULONG STDMETHODCALLTYPE factory_release(IClassFactory *self)
{
    return InterlockedDecrement(&((Factory *)self)->refs);  /* never freed: a double */
}

static HRESULT STDMETHODCALLTYPE factory_create(IClassFactory *self, IUnknown *outer, REFIID riid,
                                                void **out)
{
    if (out) *out = NULL;
    if (outer) return CLASS_E_NOAGGREGATION;
    return query(((Factory *)self)->root, riid, out);
}

static HRESULT STDMETHODCALLTYPE factory_lock(IClassFactory *self, BOOL lock)
{
    (void)self; (void)lock;
    return S_OK;
}

static const IClassFactoryVtbl factory_vtbl = {
    factory_query, factory_addref, factory_release, factory_create, factory_lock};

/* Each activation reads the script afresh: a new world of objects (old ones stay valid). */
__declspec(dllexport) HRESULT WINAPI DllGetClassObject(REFCLSID clsid, REFIID riid, void **out)
{
    World *w = load_world();
    world = w;
    for (int i = 0; i < w->n; i++) {
        Obj *o = w->objs[i];
        if (o->has_clsid && IsEqualGUID(&o->clsid, clsid)) {
            Factory *factory = calloc(1, sizeof *factory);
            factory->vtbl = &factory_vtbl;
            factory->root = o;
            return factory_query((IClassFactory *)factory, riid, out);
        }
    }
    if (out) *out = NULL;
    return CLASS_E_CLASSNOTAVAILABLE;
}

/* Never unloaded: the pointers it handed out stay callable. */
__declspec(dllexport) HRESULT WINAPI DllCanUnloadNow(void) { return S_FALSE; }
