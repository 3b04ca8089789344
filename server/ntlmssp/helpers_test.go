package ntlmssp

const (
	testComputer = "NETDEPLOY"
	testUser     = "alice"
	testPassword = "Passw0rd!"
)

func testAccounts() []Account {
	return []Account{{Name: testUser, NTHash: NTHash(testPassword)}}
}
