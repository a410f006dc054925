; xnat-uploader Windows installer: NSIS 3, Modern UI 2, per-user (no administrator rights).
;
; packaging/build.py compiles it with the version stamped in:
;   makensis -DVERSION=0.1.0 -DVERSION_NUMERIC=0.1.0.0 -DSRCDIR=<bundle folder> -DICON=<.ico>
;            -DOUTFILE=<setup.exe> [-DNO_COMPRESS] installer/windows/xnat-uploader.nsi
;
; Command line of the setup .exe:     /S silent, /D=<folder> install folder (last, unquoted),
;                                     /DESKTOP also create the desktop shortcut.
; Command line of uninstall.exe:      /S silent (keeps settings and queue), /REMOVEDATA also removes them.
; Exit code 3: the app is running (the installer/uninstaller refuses to go on).

Unicode true
ManifestDPIAware true

!ifndef VERSION
  !error "pass -DVERSION=x.y.z (packaging/build.py does)"
!endif
!ifndef VERSION_NUMERIC
  !define VERSION_NUMERIC "0.0.0.0"
!endif
!ifndef SRCDIR
  !define SRCDIR "..\..\dist\xnat-uploader"
!endif
!ifndef OUTFILE
  !define OUTFILE "xnat-uploader-${VERSION}-setup.exe"
!endif

!define APP_NAME "xnat-uploader"
!define APP_TITLE "XNAT Uploader"
!define APP_EXE "xnat-uploader.exe"
!define PUBLISHER "xnat-uploader developers"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP_NAME}"
; Settings, the queue database and the logs: platformdirs' user_config_dir, user_data_dir and
; user_log_dir (Logs\ inside) for appname "xnat-uploader", appauthor=False, roaming=False
; (xnat_uploader/paths.py) are all %LOCALAPPDATA%\xnat-uploader on Windows.
!define USER_DATA "$LOCALAPPDATA\${APP_NAME}"

Name "${APP_TITLE} ${VERSION}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\${APP_NAME}"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
!ifdef NO_COMPRESS
  SetCompress off  ; CI compile checks (-DNO_COMPRESS): 2-3 s instead of a minute or more
!else
  SetCompressor /SOLID lzma
!endif
ShowInstDetails hide
ShowUninstDetails hide
BrandingText "${APP_TITLE} ${VERSION}"

VIProductVersion "${VERSION_NUMERIC}"
VIFileVersion "${VERSION_NUMERIC}"
VIAddVersionKey "ProductName" "${APP_TITLE}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP_TITLE} ${VERSION} setup"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "LegalCopyright" "BSD-3-Clause licence"

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!include "StrFunc.nsh"
${StrStr}
${UnStrStr}

!ifdef ICON
  !define MUI_ICON "${ICON}"
  !define MUI_UNICON "${ICON}"
!endif
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_NODESC

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP_EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP_TITLE}"
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

Var OldUninstaller
Var OldInstDir

; --- Refuse while the app runs --------------------------------------------------------------------
; Two checks, because either alone can miss: a running copy of this installation holds its .exe
; open, so it cannot be opened for writing; any other copy shows up in tasklist by image name.
!macro DEFINE_CHECK_NOT_RUNNING PREFIX
Function ${PREFIX}CheckNotRunning
  retry:
  StrCpy $R0 0
  ${If} ${FileExists} "$INSTDIR\${APP_EXE}"
    ClearErrors
    FileOpen $R1 "$INSTDIR\${APP_EXE}" a
    ${If} ${Errors}
      StrCpy $R0 1
    ${Else}
      FileClose $R1
    ${EndIf}
  ${EndIf}
  ${If} $R0 == 0
    nsExec::ExecToStack '"$SYSDIR\tasklist.exe" /NH /FO CSV /FI "IMAGENAME eq ${APP_EXE}"'
    Pop $R1 ; exit code, or "error" when tasklist is missing
    Pop $R2 ; its output
    ${If} $R1 == 0
      !if "${PREFIX}" == "un."
        ${UnStrStr} $R3 $R2 '"${APP_EXE}"'
      !else
        ${StrStr} $R3 $R2 '"${APP_EXE}"'
      !endif
      ${If} $R3 != ""
        StrCpy $R0 1
      ${EndIf}
    ${EndIf}
  ${EndIf}
  ${If} $R0 == 1
    MessageBox MB_RETRYCANCEL|MB_ICONEXCLAMATION \
      "${APP_TITLE} is running.$\r$\n$\r$\nClose it (let its uploads finish, or pause them) and press Retry." \
      /SD IDCANCEL IDRETRY retry
    SetErrorLevel 3
    Quit
  ${EndIf}
FunctionEnd
!macroend
!insertmacro DEFINE_CHECK_NOT_RUNNING ""
!insertmacro DEFINE_CHECK_NOT_RUNNING "un."

; --- Install --------------------------------------------------------------------------------------
Section "${APP_TITLE}" SecApp
  SectionIn RO
  ; An earlier version: run its uninstaller in place (silent, so settings and queue stay), so that
  ; files the new version no longer has do not linger.
  ${If} $OldUninstaller != ""
  ${AndIf} ${FileExists} "$OldUninstaller"
    DetailPrint "Removing the previous version from $OldInstDir"
    ExecWait '"$OldUninstaller" /S _?=$OldInstDir'
    Delete "$OldUninstaller"
  ${EndIf}

  SetOutPath "$INSTDIR"
  File /r "${SRCDIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortcut "$SMPROGRAMS\${APP_TITLE}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0

  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP_TITLE}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\${APP_EXE},0"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" "$0"
SectionEnd

Section /o "Desktop shortcut" SecDesktop
  CreateShortcut "$DESKTOP\${APP_TITLE}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0
SectionEnd

Function .onInit
  SetShellVarContext current
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/DESKTOP" $R1
  ${IfNot} ${Errors}
    SectionSetFlags ${SecDesktop} ${SF_SELECTED}
  ${EndIf}
  ; An update keeps the desktop shortcut the user already has (the old uninstaller removes it).
  ${If} ${FileExists} "$DESKTOP\${APP_TITLE}.lnk"
    SectionSetFlags ${SecDesktop} ${SF_SELECTED}
  ${EndIf}
  ; InstallDirRegKey already made $INSTDIR the previous install folder, unless /D= says otherwise.
  ReadRegStr $OldInstDir HKCU "${UNINST_KEY}" "InstallLocation"
  ${If} $OldInstDir != ""
    StrCpy $OldUninstaller "$OldInstDir\uninstall.exe"
  ${EndIf}
  Call CheckNotRunning
FunctionEnd

; --- Uninstall ------------------------------------------------------------------------------------
Section "Uninstall"
  Delete "$SMPROGRAMS\${APP_TITLE}.lnk"
  Delete "$DESKTOP\${APP_TITLE}.lnk"
  ; Only what the installer put there (a PyInstaller one-folder bundle), never the whole folder:
  ; the user may have chosen a folder that holds other files.
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\${APP_EXE}"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"

  ${GetParameters} $R0
  ClearErrors
  ${un.GetOptions} $R0 "/REMOVEDATA" $R1
  ${If} ${Errors}
    MessageBox MB_YESNO|MB_ICONQUESTION|MB_DEFBUTTON2 \
      "Also remove your settings, the upload queue and the logs?$\r$\n$\r$\n${USER_DATA}$\r$\n$\r$\nSaved passwords stay in Windows Credential Manager." \
      /SD IDNO IDNO keep_data
  ${EndIf}
  DetailPrint "Removing ${USER_DATA}"
  RMDir /r "${USER_DATA}"
  keep_data:
SectionEnd

Function un.onInit
  SetShellVarContext current
  Call un.CheckNotRunning
FunctionEnd
