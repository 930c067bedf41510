/*
 * A PKCS#11 module that misbehaves on request, for the crash-isolation tests.
 *
 * It loads the real module named by $FAULTY_PKCS11_TARGET (SoftHSM in the tests) and hands
 * out that module's function list with a few entries replaced.  Before each replaced call
 * it reads the mode from the file named by $FAULTY_PKCS11_MODE_FILE, so a test can switch
 * modes while the worker keeps the module loaded:
 *
 *   (empty / missing)  behave like the target
 *   crash_on_sign      abort() in C_SignInit / C_Sign
 *   hang_on_sign       never return from C_SignInit / C_Sign
 *   crash_on_list      abort() in C_GetSlotList
 *   final_try          C_GetTokenInfo adds CKF_USER_PIN_FINAL_TRY
 *   locked             C_GetTokenInfo adds CKF_USER_PIN_LOCKED; C_Login says CKR_PIN_LOCKED
 *   expired            C_Login says CKR_PIN_EXPIRED
 *   pin_not_set        C_GetTokenInfo drops CKF_USER_PIN_INITIALIZED; C_Login says
 *                      CKR_USER_PIN_NOT_INITIALIZED
 *   device_error       C_Login and C_Sign say CKR_DEVICE_ERROR (a module failing inside)
 *   pin_pad            C_GetTokenInfo adds CKF_PROTECTED_AUTHENTICATION_PATH; C_Login with
 *                      no PIN logs in with $FAULTY_PKCS11_PAD_PIN, as a reader's pad would
 *
 * With $FAULTY_PKCS11_CHATTY set it also prints to stdout, as some vendor modules do.
 */

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR target;

static void read_mode(char *mode, size_t size)
{
    const char *path = getenv("FAULTY_PKCS11_MODE_FILE");
    mode[0] = '\0';
    if (path == NULL)
        return;
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return;
    size_t used = fread(mode, 1, size - 1, file);
    fclose(file);
    mode[used] = '\0';
    while (used > 0 && (mode[used - 1] == '\n' || mode[used - 1] == ' ' ||
                        mode[used - 1] == '\r' || mode[used - 1] == '\t'))
        mode[--used] = '\0';
}

static int mode_is(const char *wanted)
{
    char mode[64];
    read_mode(mode, sizeof mode);
    return strcmp(mode, wanted) == 0;
}

static void misbehave_on_sign(void)
{
    if (mode_is("crash_on_sign"))
        abort();
    if (mode_is("hang_on_sign"))
        for (;;)
            sleep(3600);
}

static CK_RV shim_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count)
{
    if (mode_is("crash_on_list"))
        abort();
    return target->C_GetSlotList(present, slots, count);
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    CK_RV rv = target->C_GetTokenInfo(slot, info);
    if (rv != CKR_OK)
        return rv;
    if (mode_is("final_try"))
        info->flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
    else if (mode_is("locked"))
        info->flags |= CKF_USER_PIN_LOCKED;
    else if (mode_is("pin_pad"))
        info->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
    else if (mode_is("pin_not_set"))
        info->flags &= ~(CK_FLAGS)CKF_USER_PIN_INITIALIZED;
    return CKR_OK;
}

static CK_RV shim_Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                        CK_ULONG pin_len)
{
    if (mode_is("locked"))
        return CKR_PIN_LOCKED;
    if (mode_is("expired"))
        return CKR_PIN_EXPIRED;
    if (mode_is("pin_not_set"))
        return CKR_USER_PIN_NOT_INITIALIZED;
    if (mode_is("device_error"))
        return CKR_DEVICE_ERROR;
    if (mode_is("pin_pad") && pin == NULL) {
        const char *pad_pin = getenv("FAULTY_PKCS11_PAD_PIN");
        if (pad_pin == NULL)
            return CKR_FUNCTION_CANCELED; /* nobody typed anything on the pad */
        return target->C_Login(session, user, (CK_UTF8CHAR_PTR)pad_pin, strlen(pad_pin));
    }
    return target->C_Login(session, user, pin, pin_len);
}

static CK_RV shim_SignInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                           CK_OBJECT_HANDLE key)
{
    misbehave_on_sign();
    return target->C_SignInit(session, mechanism, key);
}

static CK_RV shim_Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                       CK_BYTE_PTR signature, CK_ULONG_PTR signature_len)
{
    misbehave_on_sign();
    if (mode_is("device_error"))
        return CKR_DEVICE_ERROR;
    return target->C_Sign(session, data, data_len, signature, signature_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    if (getenv("FAULTY_PKCS11_CHATTY") != NULL) {
        printf("faulty_pkcs11: hello from a chatty vendor module\n");
        fflush(stdout);
    }
    if (target == NULL) {
        const char *path = getenv("FAULTY_PKCS11_TARGET");
        if (path == NULL)
            return CKR_GENERAL_ERROR;
        void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL)
            return CKR_GENERAL_ERROR;
        CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) =
            (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(handle, "C_GetFunctionList");
        if (get_list == NULL || get_list(&target) != CKR_OK || target == NULL) {
            target = NULL;
            return CKR_GENERAL_ERROR;
        }
        shim = *target;
        shim.C_GetSlotList = shim_GetSlotList;
        shim.C_GetTokenInfo = shim_GetTokenInfo;
        shim.C_Login = shim_Login;
        shim.C_SignInit = shim_SignInit;
        shim.C_Sign = shim_Sign;
    }
    *list = &shim;
    return CKR_OK;
}
