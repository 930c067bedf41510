<#
.SYNOPSIS
  Builds imza-agent for Windows: the frozen program (PyInstaller onedir), signed, and the
  per-user and per-machine MSIs, signed.

.DESCRIPTION
  Run from a checkout on Windows 10/11 x64 with Python 3.11 (python.org or the CI's) and
  MSYS2's msitools for wixl (pacman -S mingw-w64-x86_64-msitools): the MSIs are compiled by
  the same wixl that tests/test_msi.py runs on Linux, from the same imza-agent.wxs.

    powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1 `
        [-OutDir dist] [-Python py] [-Wixl C:\msys64\mingw64\bin\wixl.exe] `
        [-CertThumbprint <SHA-1 of a code-signing certificate in the user's or machine's store>] `
        [-PfxFile cert.pfx -PfxPassword ...] [-TimestampUrl http://timestamp.example]

  Code signing: with -CertThumbprint or -PfxFile, signtool (Windows SDK) signs the three
  executables before they are packed, and then both MSIs; the signatures carry an RFC 3161
  timestamp from -TimestampUrl, so they stay valid after the certificate expires. Without
  either, nothing is signed and the script says so (CI builds for tests). Sign with an
  OV or EV code-signing certificate: SmartScreen warns about unsigned MSIs, and many
  companies' AppLocker / WDAC rules admit only signed ones.

  Not run on this project's development machine (Linux); .github/workflows/windows.yml
  runs it on GitHub's windows-latest.
#>
[CmdletBinding()]
param(
    [string]$OutDir = "dist",
    [string]$Python = "py",
    [string]$Wixl = "C:\msys64\mingw64\bin\wixl.exe",
    [string]$CertThumbprint = "",
    [string]$PfxFile = "",
    [string]$PfxPassword = "",
    [string]$TimestampUrl = "http://timestamp.digicert.com"
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
$Repo = (Resolve-Path (Join-Path $Here "..\..")).Path
$Work = Join-Path $Repo "build\windows"
$OutDir = [System.IO.Path]::GetFullPath((Join-Path $Repo $OutDir))
New-Item -ItemType Directory -Force -Path $Work, $OutDir | Out-Null

function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed ($LASTEXITCODE)" }
}

# --- 1. A private build environment: the agent with its [formats] extra, and PyInstaller.
$Venv = Join-Path $Work "venv"
if (-not (Test-Path (Join-Path $Venv "Scripts\python.exe"))) {
    # The py launcher picks 3.11 itself; any other -Python is taken as that interpreter.
    $VenvArgs = @("-m", "venv", $Venv)
    if ($Python -eq "py") { $VenvArgs = @("-3.11") + $VenvArgs }
    Invoke-Checked $Python $VenvArgs
}
$Py = Join-Path $Venv "Scripts\python.exe"
Invoke-Checked $Py @("-m", "pip", "install", "-q", "--upgrade", "pip")
Invoke-Checked $Py @("-m", "pip", "install", "-q", "$Repo[formats]", "pyinstaller>=6.10,<7")
$Version = & $Py -c "import agent; print(agent.__version__)"

# --- 2. Icon and version resource for the executables.
$Icon = Join-Path $Work "imza-agent.ico"
Invoke-Checked $Py @("-c", @"
import sys
from PySide6.QtGui import QGuiApplication
from agent.ui.qt.icon import status_pixmap
app = QGuiApplication([sys.argv[0], '-platform', 'offscreen'])
if not status_pixmap('ok', 256).save(r'$Icon', 'ICO'):
    raise SystemExit('could not write the icon')
"@)
$Parts = ($Version.Split(".") + @("0", "0", "0"))[0..3] -join ", "
$VersionFile = Join-Path $Work "versioninfo.txt"
@"
VSVersionInfo(
  ffi=FixedFileInfo(filevers=($Parts), prodvers=($Parts), mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[StringFileInfo([StringTable('040904B0', [
          StringStruct('CompanyName', 'imza-agent'),
          StringStruct('FileDescription', 'imza-agent: e-signature with USB tokens and smart cards'),
          StringStruct('FileVersion', '$Version'),
          StringStruct('ProductName', 'imza-agent'),
          StringStruct('ProductVersion', '$Version')])]),
        VarFileInfo([VarStruct('Translation', [1033, 1200])])])
"@ | Set-Content -Encoding UTF8 $VersionFile

# --- 3. The frozen program: build\windows\dist\imza-agent\ (onedir).
$env:IMZA_ICON = $Icon
$env:IMZA_VERSION_FILE = $VersionFile
Invoke-Checked $Py @("-m", "PyInstaller", "--noconfirm", "--clean",
    "--distpath", (Join-Path $Work "dist"), "--workpath", (Join-Path $Work "work"),
    (Join-Path $Here "imza-agent.spec"))
$Payload = Join-Path $Work "dist\imza-agent"
# The browser extension's packages, for administrators who force-install it (docs/windows.md).
Invoke-Checked $Py @("-m", "agent.browser_extension", "--out", (Join-Path $Payload "extension"))
Copy-Item (Join-Path $Repo "LICENSE") (Join-Path $Payload "LICENSE.txt")
# A smoke test of the frozen program: it starts, and `-m` reaches a module (entry.py).
Invoke-Checked (Join-Path $Payload "imza-agent.exe") @("--help")
Invoke-Checked (Join-Path $Payload "imza-agent.exe") @("-m", "agent.cli", "--help")

# --- 4. Code signing hook (signtool from the Windows SDK).
function Get-SignArguments {
    if ($CertThumbprint) { return @("/sha1", $CertThumbprint) }
    if ($PfxFile) { return @("/f", $PfxFile, "/p", $PfxPassword) }
    return $null
}
function Invoke-Sign([string[]]$Files, [string]$Description) {
    $Identity = Get-SignArguments
    if ($null -eq $Identity) {
        Write-Warning "not signing $($Files.Count) file(s): no -CertThumbprint or -PfxFile"
        return
    }
    $SignTool = (Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" |
                 Sort-Object FullName -Descending | Select-Object -First 1).FullName
    Invoke-Checked $SignTool (@("sign", "/fd", "sha256", "/tr", $TimestampUrl, "/td", "sha256",
                                "/d", $Description) + $Identity + $Files)
    Invoke-Checked $SignTool (@("verify", "/pa", "/all") + $Files)
}
$Exes = Get-ChildItem $Payload -Filter "imza-agent*.exe" | ForEach-Object { $_.FullName }
Invoke-Sign $Exes "imza-agent"

# --- 5. The MSIs (wixl), then their signatures.
Invoke-Checked $Py @((Join-Path $Here "manifests.py"), $Payload)
$Msis = @()
foreach ($Scope in @("perUser", "perMachine")) {
    $Suffix = if ($Scope -eq "perUser") { "user" } else { "machine" }
    $Fragment = Join-Path $Work "payload-$Scope.wxs"
    Invoke-Checked $Py @((Join-Path $Here "harvest.py"), $Payload, "--scope", $Scope, "-o", $Fragment)
    $Msi = Join-Path $OutDir "imza-agent-$Version-$Suffix.msi"
    Push-Location $Payload  # wixl resolves every Source against the working directory
    try {
        Invoke-Checked $Wixl @("-a", "x64", "-D", "Scope=$Scope", "-D", "Version=$Version",
            "-o", $Msi, (Join-Path $Here "imza-agent.wxs"), $Fragment)
    } finally { Pop-Location }
    $Msis += $Msi
}
Invoke-Sign $Msis "imza-agent installer"
$Msis | ForEach-Object { Write-Output $_ }
