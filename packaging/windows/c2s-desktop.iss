; Inno Setup script for C2S Desktop (Windows x64).
;
; Build on Windows after `pyinstaller packaging\c2s_desktop.spec` (see docs\BUILD.md):
;   iscc /DAppVersion=0.1.0 /DBundleDir=..\..\dist\c2s-desktop packaging\windows\c2s-desktop.iss
; Output: dist\C2S-Desktop-<version>-setup.exe
;
; Installs per user by default (no administrator rights needed; the dialog offers all users).
; The uninstaller removes only what it installed: models, settings, sessions and logs in the
; user's AppData folders are left alone.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\c2s-desktop"
#endif
#ifndef Variant
  #define Variant ""
#endif

[Setup]
AppId={{FFC6535B-64D1-4A52-BEE9-03A0668E29B5}
AppName=C2S Desktop
AppVersion={#AppVersion}
AppVerName=C2S Desktop {#AppVersion}
AppPublisher=C2S Desktop
AppPublisherURL=https://github.com/vandijklab/cell2sentence
DefaultDirName={autopf}\C2S Desktop
DefaultGroupName=C2S Desktop
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=C2S-Desktop-{#AppVersion}{#Variant}-setup
SetupIconFile=..\..\resources\icons\c2s-desktop.ico
UninstallDisplayIcon={app}\c2s-desktop.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "h5adassoc"; Description: "Open .h5ad files with C2S Desktop"; GroupDescription: "File types:"; Flags: unchecked
Name: "addtopath"; Description: "Add the c2s and c2s-quantize commands to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\C2S Desktop"; Filename: "{app}\c2s-desktop.exe"
Name: "{group}\C2S Desktop (demo data)"; Filename: "{app}\c2s-desktop.exe"; Parameters: """{app}\_internal\resources\demo\pbmc_demo.h5ad"""
Name: "{group}\Uninstall C2S Desktop"; Filename: "{uninstallexe}"
Name: "{autodesktop}\C2S Desktop"; Filename: "{app}\c2s-desktop.exe"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.h5ad\OpenWithProgids"; ValueType: string; ValueName: "C2SDesktop.h5ad"; ValueData: ""; Flags: uninsdeletevalue; Tasks: h5adassoc
Root: HKA; Subkey: "Software\Classes\C2SDesktop.h5ad"; ValueType: string; ValueName: ""; ValueData: "AnnData file"; Flags: uninsdeletekey; Tasks: h5adassoc
Root: HKA; Subkey: "Software\Classes\C2SDesktop.h5ad\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\c2s-desktop.exe,0"; Tasks: h5adassoc
Root: HKA; Subkey: "Software\Classes\C2SDesktop.h5ad\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\c2s-desktop.exe"" ""%1"""; Tasks: h5adassoc
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Check: NeedsAddPath(ExpandConstant('{app}')); Tasks: addtopath

[Run]
; Proves the installed copy works (offscreen, about a minute); failures are shown, not fatal.
Filename: "{app}\c2s-desktop.exe"; Parameters: "--self-test"; StatusMsg: "Checking the installation..."; Flags: runhidden waituntilterminated; Check: WizardSilent
Filename: "{app}\c2s-desktop.exe"; Parameters: """{app}\_internal\resources\demo\pbmc_demo.h5ad"""; Description: "Start C2S Desktop with the demo data"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only files the app writes inside its own folder (Python byte-code caches); never user data.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKCU, 'Environment', 'Path', Path) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
