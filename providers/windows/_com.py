"""A tiny COM client: raw vtable calls driven by the metadata's slots, and the HRESULT arithmetic.

No comtypes: every method is called through the slot and signature `_layouts.py` took from
Microsoft's metadata, so a wrong slot is a metadata bug, not a typo here. The vtable caller is
plain ctypes and works against any object laid out as COM lays it out (tests build one on
Linux); only `Ole` needs Windows. Pure helpers (HRESULTs, GUID text, IVdsAsync::Wait results,
IDispatch exceptions) carry the logic and are tested everywhere.
"""

from __future__ import annotations

import ctypes
import os
import uuid
from dataclasses import dataclass
from typing import Any

from conformance.provider import Outcome

from . import _layouts, _structs
from ._structs import GUID

S_OK = 0
S_FALSE = 1
VARIANT_TRUE = -1  # oleauto.h: ((VARIANT_BOOL)-1)
_U32 = 0xFFFFFFFF
_FACILITY_WIN32 = 7
C = _layouts.CONSTANTS

# WINFUNCTYPE is stdcall on 32-bit Windows and the one x64 convention elsewhere; Linux has
# only CFUNCTYPE, which is the same convention as x64 Windows' for the tests' fake objects.
FUNCTYPE = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)
# VDS and Virtual PC are out-of-process servers, activated as CLSCTX_LOCAL_SERVER. The Wine
# job's COM double (ci/doubles/gen_com_double.py) is an in-process server registered in the
# prefix: with this variable set to 1 activation may also load an in-process server. Nothing
# sets it on a real host.
INPROC_ENV = "CONFORMANCE_WINDOWS_COM_INPROC"


# --------------------------------------------------------------------------- HRESULTs


def u32(value: int) -> int:
    """The unsigned 32-bit view; the metadata types HRESULT as signed, the contract never is."""
    return value & _U32


def failed(hresult: int) -> bool:
    return bool(u32(hresult) & 0x80000000)


def hresult_from_win32(code: int) -> int:
    """HRESULT_FROM_WIN32 as winerror.h defines it."""
    if u32(code) == 0 or failed(code):
        return u32(code)
    return u32((code & 0xFFFF) | (_FACILITY_WIN32 << 16) | 0x80000000)


def hex32(value: int) -> str:
    return f"0x{u32(value):08X}"


# --------------------------------------------------------------------------- GUIDs


def guid(text: str) -> GUID:
    """A GUID (VDS_OBJECT_ID, IID, CLSID) from its string form; ValueError if it is not one."""
    data = uuid.UUID(str(text)).bytes_le
    value = GUID()
    ctypes.memmove(ctypes.addressof(value), data, 16)
    return value


def guid_text(value: GUID) -> str:
    """The canonical lower-case string of a GUID, the provider id of a VDS object."""
    return str(uuid.UUID(bytes_le=ctypes.string_at(ctypes.addressof(value), 16)))


def guid_key(value: Any) -> str | None:
    """Canonical form of a GUID string, so ids compare by value, not by spelling."""
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else None
    except ValueError:
        return None


GUID_NULL = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------- async results


@dataclass(frozen=True)
class AsyncResult:
    """What a method with an async out-parameter gave: its HRESULT, the pointer, the result.

    handle: a printable stand-in for the IVdsAsync/IVMTask pointer, None when it was NULL.
    completion: the operation's result once waited for; None when there was nothing to wait on.
    """

    hresult: int
    handle: str | None = None
    completion: int | None = None


def wait_completion(wait_hresult: int, operation_hresult: int) -> int:
    """IVdsAsync::Wait's two HRESULTs -> the operation's result as the caller must read it.

    The page: the call's HRESULT reports failures of Wait itself, pHrResult those of the
    operation, and both must be examined. When Wait fails the operation's result never
    arrived, so Wait's failure is the result the caller sees.
    """
    return u32(wait_hresult) if failed(wait_hresult) else u32(operation_hresult)


def async_outcome(out_name: str, result: AsyncResult) -> Outcome:
    """An Outcome for the contract: the pointer as returned (so a non-NULL pointer on failure
    shows), the completion only when an async object came back."""
    completion = result.completion if result.handle is not None else None
    return Outcome(
        hresult=u32(result.hresult),
        outputs={out_name: result.handle},
        completion=None if completion is None else u32(completion),
    )


def dispatch_hresult(invoke_hresult: int, scode: int, wcode: int) -> int:
    """IDispatch::Invoke's result -> the member's own HRESULT where the EXCEPINFO carries it.

    A dual interface called by name reports a failing member as DISP_E_EXCEPTION with the
    member's HRESULT in EXCEPINFO.scode (or a wCode, which maps to 0x80040200 + wCode); an
    exception that carries neither is the automation layer's own DISP_E_EXCEPTION.
    """
    if u32(invoke_hresult) != u32(C["DISP_E_EXCEPTION"]):
        return u32(invoke_hresult)
    if scode:
        return u32(scode)
    if wcode:
        return u32(0x80040200 + wcode)
    return u32(invoke_hresult)


def variant_value(value: Any) -> Any:
    """A result VARIANT as Python, for the automation types Virtual PC's members return."""
    readers = {
        C["VT_BSTR"]: lambda v: _structs.read_wide(v.bstrVal) or "",
        C["VT_BOOL"]: lambda v: v.boolVal != 0,
        C["VT_I4"]: lambda v: int(v.lVal),
        C["VT_EMPTY"]: lambda v: None,
    }
    reader = readers.get(value.vt)
    if reader is None:
        raise ComError(f"a VARIANT of type {value.vt}", 0x80020005)  # DISP_E_TYPEMISMATCH
    return reader(value)


# --------------------------------------------------------------------------- vtable calls


class ComError(Exception):
    """A COM call the backend needed (not the method under test) failed."""

    def __init__(self, what: str, hresult: int) -> None:
        super().__init__(f"{what} failed with {hex32(hresult)}")
        self.hresult = u32(hresult)


class ComObject:
    """One interface pointer; methods are called by (interface, name) through the vtable.

    It owns one reference and releases it once; `query` returns a new owned pointer.
    """

    def __init__(self, address: int, interface: str) -> None:
        if not address:
            raise ValueError(f"NULL {interface} pointer")
        self.address = address
        self.interface = interface

    def __repr__(self) -> str:
        return f"{self.interface}@0x{self.address:x}"

    def raw(self, method: str, *args: Any, interface: str | None = None) -> int:
        """Call a method of `interface` (default: this pointer's) and return its raw result."""
        slot, restype, argtypes = _structs.method(interface or self.interface, method)
        vtable = ctypes.cast(self.address, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p)))[0]
        function = FUNCTYPE(restype, ctypes.c_void_p, *argtypes)(vtable[slot])
        return function(self.address, *args)

    def call(self, method: str, *args: Any) -> int:
        """A method that returns an HRESULT, as unsigned."""
        return u32(self.raw(method, *args))

    def check(self, method: str, *args: Any) -> int:
        """A method the backend needs to succeed; ComError names it otherwise."""
        hresult = self.call(method, *args)
        if failed(hresult):
            raise ComError(f"{self.interface}::{method}", hresult)
        return hresult

    def query(self, interface: str) -> ComObject | None:
        """QueryInterface; None when the object does not implement `interface`."""
        out = ctypes.c_void_p()
        iid = guid(_structs.iid(interface))
        hresult = u32(
            self.raw("QueryInterface", ctypes.byref(iid), ctypes.byref(out), interface="IUnknown")
        )
        if failed(hresult) or not out.value:
            return None
        return ComObject(out.value, interface)

    def release(self) -> None:
        if self.address:
            self.raw("Release", interface="IUnknown")
            self.address = 0

    def __enter__(self) -> ComObject:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def out_object(pointer: ctypes.c_void_p, interface: str) -> ComObject | None:
    return ComObject(pointer.value, interface) if pointer.value else None


def enumerate_objects(enum: ComObject) -> list[ComObject]:
    """Every object an IEnumVdsObject yields, as IUnknown pointers (the caller queries them)."""
    objects: list[ComObject] = []
    while True:
        unknown = ctypes.c_void_p()
        fetched = ctypes.c_uint32()
        hresult = enum.call("Next", 1, ctypes.byref(unknown), ctypes.byref(fetched))
        if failed(hresult):
            raise ComError("IEnumVdsObject::Next", hresult)
        if fetched.value == 0 or not unknown.value:
            return objects
        objects.append(ComObject(unknown.value, "IUnknown"))


def wait(async_object: ComObject) -> int:
    """IVdsAsync::Wait, then release the async object; the operation's result."""
    result = ctypes.c_int32()
    output = _structs.struct("VDS_ASYNC_OUTPUT")()
    try:
        hresult = async_object.call("Wait", ctypes.byref(result), ctypes.byref(output))
        return wait_completion(hresult, result.value)
    finally:
        async_object.release()


def wait_with_output(async_object: ComObject) -> tuple[int, Any]:
    """IVdsAsync::Wait keeping VDS_ASYNC_OUTPUT (e.g. CreatePortalGroup's new group)."""
    result = ctypes.c_int32()
    output = _structs.struct("VDS_ASYNC_OUTPUT")()
    try:
        hresult = async_object.call("Wait", ctypes.byref(result), ctypes.byref(output))
        return wait_completion(hresult, result.value), output
    finally:
        async_object.release()


def call_async(obj: ComObject, method: str, *args: Any) -> AsyncResult:
    """A VDS method whose last parameter is IVdsAsync**: call, then wait when a pointer came."""
    pointer = ctypes.c_void_p()
    hresult = obj.call(method, *args, ctypes.byref(pointer))
    handle = out_object(pointer, "IVdsAsync")
    if handle is None:
        return AsyncResult(hresult)
    name = repr(handle)
    return AsyncResult(hresult, name, wait(handle))


# --------------------------------------------------------------------------- Windows only


def bind(dll: Any, name: str) -> Any:
    """A DLL export with restype and argtypes set from the metadata's declaration."""
    _, restype, argtypes = _structs.function(name)
    export = getattr(dll, name)
    export.restype = restype
    export.argtypes = argtypes
    return export


class Ole:
    """ole32/oleaut32 for the COM clients; constructing it needs Windows."""

    def __init__(self) -> None:
        windll = ctypes.WinDLL  # type: ignore[attr-defined]  # AttributeError off Windows
        ole32, oleaut32 = windll("ole32"), windll("oleaut32")
        self._init = bind(ole32, "CoInitializeEx")
        self._uninit = bind(ole32, "CoUninitialize")
        self._create = bind(ole32, "CoCreateInstance")
        self._progid = bind(ole32, "CLSIDFromProgID")
        self.task_free = bind(ole32, "CoTaskMemFree")
        self.sys_alloc = bind(oleaut32, "SysAllocString")
        self.sys_free = bind(oleaut32, "SysFreeString")
        self.variant_clear = bind(oleaut32, "VariantClear")
        hresult = u32(self._init(None, C["COINIT_MULTITHREADED"]))
        # RPC_E_CHANGED_MODE: the thread is already in an apartment; COM is usable as it is.
        self._owns_init = not failed(hresult)
        if failed(hresult) and hresult != u32(C["RPC_E_CHANGED_MODE"]):
            raise ComError("CoInitializeEx", hresult)

    def create(self, clsid: GUID, interface: str, context: int) -> ComObject:
        if os.environ.get(INPROC_ENV) == "1":
            context |= C["CLSCTX_ALL"]
        out = ctypes.c_void_p()
        iid = guid(_structs.iid(interface))
        hresult = u32(
            self._create(ctypes.byref(clsid), None, context, ctypes.byref(iid), ctypes.byref(out))
        )
        if failed(hresult) or not out.value:
            raise ComError(f"CoCreateInstance({guid_text(clsid)}, {interface})", hresult)
        return ComObject(out.value, interface)

    def clsid_from_progid(self, progid: str) -> tuple[int, GUID]:
        clsid = GUID()
        text = _structs.c_string(progid, wide=True, code_page="ascii")
        return u32(self._progid(ctypes.cast(text, ctypes.c_void_p), ctypes.byref(clsid))), clsid

    def take_wide(self, address: int | None) -> str | None:
        """A CoTaskMemAlloc'ed PWSTR the callee handed over: read it, then free it."""
        if not address:
            return None
        try:
            return _structs.read_wide(address)
        finally:
            self.task_free(address)

    def close(self) -> None:
        if self._owns_init:
            self._uninit()
            self._owns_init = False


class Dispatch:
    """Late-bound IDispatch calls by member name (Virtual PC has no metadata to bind early)."""

    def __init__(self, obj: ComObject, ole: Ole) -> None:
        self.obj = obj
        self.ole = ole

    def dispid(self, name: str) -> int:
        text = _structs.c_string(name, wide=True, code_page="ascii")
        names = (ctypes.c_void_p * 1)(ctypes.cast(text, ctypes.c_void_p).value)
        dispid = ctypes.c_int32()
        iid_null = guid(GUID_NULL)
        self.obj.check("GetIDsOfNames", ctypes.byref(iid_null), names, 1, 0, ctypes.byref(dispid))
        return dispid.value

    def invoke(self, name: str, flags: int, *args: bool | int | str) -> tuple[int, Any]:
        """(the member's HRESULT, the result VARIANT); the caller clears the VARIANT.

        A property put passes its value as the one named argument DISPID_PROPERTYPUT, as
        IDispatch requires; text goes as a BSTR, a bool as VARIANT_BOOL, a number as VT_I4.
        """
        variant = _structs.struct("VARIANT")
        count = len(args)
        argv = (variant * max(count, 1))()
        bstrs = []
        for i, value in enumerate(reversed(args)):  # IDispatch takes arguments last first
            if isinstance(value, str):
                text = _structs.c_string(value, wide=True, code_page="ascii")
                bstr = self.ole.sys_alloc(ctypes.cast(text, ctypes.c_void_p))
                bstrs.append(bstr)
                argv[i].vt, argv[i].bstrVal = C["VT_BSTR"], bstr
            elif isinstance(value, bool):
                argv[i].vt, argv[i].boolVal = C["VT_BOOL"], VARIANT_TRUE if value else 0
            else:
                argv[i].vt, argv[i].lVal = C["VT_I4"], int(value)
        put = flags == C["DISPATCH_PROPERTYPUT"]
        named = ctypes.c_int32(C["DISPID_PROPERTYPUT"])
        params = _structs.struct("DISPPARAMS")(
            ctypes.cast(argv, ctypes.POINTER(variant)),
            ctypes.pointer(named) if put else None,
            count,
            1 if put else 0,
        )
        result = variant()
        excepinfo = _structs.struct("EXCEPINFO")()
        arg_err = ctypes.c_uint32()
        iid_null = guid(GUID_NULL)
        try:
            hresult = self.obj.call(
                "Invoke",
                self.dispid(name),
                ctypes.byref(iid_null),
                0,
                flags,
                ctypes.byref(params),
                None if put else ctypes.byref(result),
                ctypes.byref(excepinfo),
                ctypes.byref(arg_err),
            )
        finally:
            for bstr in bstrs:
                self.ole.sys_free(bstr)
        for field in ("bstrSource", "bstrDescription", "bstrHelpFile"):
            if getattr(excepinfo, field):
                self.ole.sys_free(getattr(excepinfo, field))
        return dispatch_hresult(hresult, excepinfo.scode, excepinfo.wCode), result

    def get_value(self, name: str, flags: int, *args: bool | int | str) -> tuple[int, Any]:
        """A member that returns a value: its HRESULT and the value as Python (BSTR -> str,
        VARIANT_BOOL -> bool, VT_I4 -> int; None when it failed or returned nothing)."""
        hresult, result = self.invoke(name, flags, *args)
        try:
            if failed(hresult):
                return hresult, None
            return hresult, variant_value(result)
        finally:
            self.ole.variant_clear(ctypes.byref(result))

    def get_object(self, name: str, flags: int, *args: int | str) -> tuple[int, Dispatch | None]:
        """A member that returns an object (VT_DISPATCH): its HRESULT and the object."""
        hresult, result = self.invoke(name, flags, *args)
        if failed(hresult) or result.vt != C["VT_DISPATCH"] or not result.pdispVal:
            self.ole.variant_clear(ctypes.byref(result))
            return hresult, None
        # The VARIANT's reference becomes the ComObject's; the VARIANT is not cleared.
        return hresult, Dispatch(ComObject(result.pdispVal, "IDispatch"), self.ole)

    def get_int(self, name: str) -> tuple[int, int | None]:
        hresult, result = self.invoke(name, C["DISPATCH_PROPERTYGET"])
        value = result.lVal if not failed(hresult) and result.vt == C["VT_I4"] else None
        self.ole.variant_clear(ctypes.byref(result))
        return hresult, value

    def release(self) -> None:
        self.obj.release()
