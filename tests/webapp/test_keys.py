"""WireGuard keys match Debian's ``wg``, and private keys are sealed at rest."""

import base64
import subprocess

import pytest

from tests.conftest import have_command, require
from webapp import keys


def test_keypair_is_base64_of_32_bytes():
    pair = keys.generate_keypair()
    assert len(base64.b64decode(pair.private_key)) == 32
    assert len(base64.b64decode(pair.public_key)) == 32
    assert pair.private_key not in repr(pair)


def test_public_key_matches_wg_pubkey():
    require(have_command("wg"), "wireguard-tools (wg) is not installed")
    for _ in range(3):
        pair = keys.generate_keypair()
        expected = subprocess.run(["wg", "pubkey"], input=pair.private_key, capture_output=True, text=True, check=True)
        assert pair.public_key == expected.stdout.strip()


def test_public_key_of_a_wg_genkey_key():
    require(have_command("wg"), "wireguard-tools (wg) is not installed")
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    expected = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout
    assert keys.public_key_of(private) == expected.strip()


def test_sealed_key_round_trips_and_hides_the_key():
    pair = keys.generate_keypair()
    sealed = keys.encrypt_private_key(pair.private_key, "secret one")
    assert pair.private_key.encode() not in sealed
    assert base64.b64decode(pair.private_key) not in sealed
    assert keys.decrypt_private_key(sealed, "secret one") == pair.private_key


def test_wrong_secret_cannot_open_a_sealed_key():
    sealed = keys.encrypt_private_key(keys.generate_keypair().private_key, "secret one")
    with pytest.raises(keys.KeyDecryptionError):
        keys.decrypt_private_key(sealed, "secret two")


@pytest.mark.parametrize("value", ["", "abc", "A" * 44, "!" * 43 + "=", None, 5])
def test_validate_public_key_refuses_junk(value):
    with pytest.raises(Exception) as error:
        keys.validate_public_key(value)
    assert "base64 of 32 bytes" in str(error.value)
